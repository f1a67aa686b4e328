//! Tera's parse with the plain text set aside. Tera's parser tries six delimiters at every
//! character of a template's plain text, so a template that is mostly text (HTML: 6,000 of
//! the built-in `digest.html`'s 7,700 bytes) costs most of its parse there, and the parse
//! is most of a run's start. Each run of text goes to Tera as a short placeholder and is
//! put back into the parsed template: the same template, in about 40 % of the time
//! (BENCHMARKS.md, "The templates' text set aside").
//!
//! What this cannot match exactly goes to Tera unchanged: a `raw` block, a source that
//! already holds a placeholder's character, a tag left open, a placeholder not found
//! where its text should be, and any template that does not parse (so that an error
//! names Tera's line and column in the real text).

use tera::Template;
use tera::ast::Node;

/// A placeholder is `OPEN`, the run's number in decimal, `CLOSE`: private-use characters
/// (not the ones the composer's markers use), with no whitespace, so Tera's trimming
/// (`{%-`, `-%}`) never reaches into one.
const OPEN: char = '\u{f8f0}';
const CLOSE: char = '\u{f8f1}';

/// Parses `text` as Tera does (`Template::new`), faster.
pub(crate) fn template(name: &str, text: &str) -> tera::Result<Template> {
    match set_aside_and_parse(name, text) {
        Some(parsed) => Ok(parsed),
        None => Template::new(name, None, text),
    }
}

/// The template parsed with its text set aside, when that gives Tera's own result.
fn set_aside_and_parse(name: &str, text: &str) -> Option<Template> {
    let (disguised, runs) = set_aside(text)?;
    let mut parsed = Template::new(name, None, &disguised).ok()?;
    put_back(&mut parsed, &runs).then_some(parsed)
}

/// `text` with the inside of every run of plain text (its leading and trailing whitespace
/// kept, for Tera to trim) replaced by a placeholder, and the runs set aside; `None` for
/// what only Tera's own parse handles.
fn set_aside(text: &str) -> Option<(String, Vec<&str>)> {
    if text.contains([OPEN, CLOSE]) {
        return None;
    }
    let mut disguised = String::with_capacity(text.len() / 2);
    let mut runs = Vec::new();
    let mut rest = text;
    loop {
        let start = tag_start(rest);
        let (plain, tail) = rest.split_at(start);
        let inner = plain.trim_start();
        let lead = plain.len() - inner.len();
        let inner = inner.trim_end();
        if inner.is_empty() {
            disguised.push_str(plain);
        } else {
            disguised.push_str(&plain[..lead]);
            disguised.push(OPEN);
            disguised.push_str(&runs.len().to_string());
            disguised.push(CLOSE);
            disguised.push_str(&plain[lead + inner.len()..]);
            runs.push(inner);
        }
        if tail.is_empty() {
            return Some((disguised, runs));
        }
        let end = tag_end(tail)?;
        let tag = &tail[..end];
        if is_raw(tag) {
            return None;
        }
        disguised.push_str(tag);
        rest = &tail[end..];
    }
}

/// Where plain text ends: where the first tag starts (`{{`, `{%`, `{#`), as Tera's grammar
/// has it (`text`), or the end.
fn tag_start(text: &str) -> usize {
    let bytes = text.as_bytes();
    memchr::memchr_iter(b'{', bytes)
        .find(|&i| matches!(bytes.get(i + 1), Some(b'{' | b'%' | b'#')))
        .unwrap_or(bytes.len())
}

/// The length of the tag `tail` starts with: up to its closing delimiter, outside any
/// quoted string (Tera's strings take `"`, `'` and `` ` ``, without escapes).
fn tag_end(tail: &str) -> Option<usize> {
    if let Some(comment) = tail.strip_prefix("{#") {
        return comment.find("#}").map(|i| i + 4);
    }
    let close = if tail.starts_with("{{") { b'}' } else { b'%' };
    let bytes = tail.as_bytes();
    let mut quote = None;
    for i in 2..bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            None if matches!(b, b'"' | b'\'' | b'`') => quote = Some(b),
            None if b == close && bytes.get(i + 1) == Some(&b'}') => return Some(i + 2),
            _ => {}
        }
    }
    None
}

/// `{% raw %}` (with any whitespace control): its text is Tera's own to read.
fn is_raw(tag: &str) -> bool {
    tag.strip_prefix("{%")
        .and_then(|t| t.strip_suffix("%}"))
        .is_some_and(|t| t.trim_matches('-').trim() == "raw")
}

/// Puts every run back into the template's text nodes, and into the copies of its blocks
/// and macros; `false` unless every run was found in a text node of the template.
fn put_back(parsed: &mut Template, runs: &[&str]) -> bool {
    let mut found = vec![false; runs.len()];
    nodes(&mut parsed.ast, runs, &mut found)
        && !found.contains(&false)
        && parsed
            .blocks
            .values_mut()
            .all(|b| nodes(&mut b.body, runs, &mut found))
        && parsed
            .macros
            .values_mut()
            .all(|m| nodes(&mut m.body, runs, &mut found))
}

/// Restores the runs in `list` and every body nested in it.
fn nodes(list: &mut [Node], runs: &[&str], found: &mut [bool]) -> bool {
    list.iter_mut().all(|node| match node {
        Node::Text(text) => restore(text, runs, found),
        Node::MacroDefinition(_, m, _) => nodes(&mut m.body, runs, found),
        Node::FilterSection(_, f, _) => nodes(&mut f.body, runs, found),
        Node::Block(_, b, _) => nodes(&mut b.body, runs, found),
        Node::Forloop(_, f, _) => {
            nodes(&mut f.body, runs, found)
                && f.empty_body
                    .as_mut()
                    .is_none_or(|body| nodes(body, runs, found))
        }
        Node::If(i, _) => {
            i.conditions
                .iter_mut()
                .all(|(_, _, body)| nodes(body, runs, found))
                && i.otherwise
                    .as_mut()
                    .is_none_or(|(_, body)| nodes(body, runs, found))
        }
        Node::Raw(..)
        | Node::Super
        | Node::VariableBlock(..)
        | Node::Extends(..)
        | Node::Include(..)
        | Node::ImportMacro(..)
        | Node::Set(..)
        | Node::Break(_)
        | Node::Continue(_)
        | Node::Comment(..) => true,
    })
}

/// Replaces each placeholder in `text` with its run; `false` for anything else that looks
/// like one.
fn restore(text: &mut String, runs: &[&str], found: &mut [bool]) -> bool {
    if !text.contains(OPEN) {
        return !text.contains(CLOSE);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else {
            return false;
        };
        let Some(run) = after[..end]
            .parse::<usize>()
            .ok()
            .filter(|&n| n < runs.len())
        else {
            return false;
        };
        out.push_str(runs[run]);
        found[run] = true;
        rest = &after[end + CLOSE.len_utf8()..];
    }
    if rest.contains(CLOSE) {
        return false;
    }
    out.push_str(rest);
    *text = out;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `template` and Tera's own parse agree on everything a template holds, or fail alike.
    fn same(text: &str) {
        let ours = template("t.html", text);
        let teras = Template::new("t.html", None, text);
        match (ours, teras) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.ast, b.ast, "{text:?}");
                assert_eq!(a.blocks, b.blocks, "{text:?}");
                assert_eq!(a.macros, b.macros, "{text:?}");
                assert_eq!(a.parent, b.parent, "{text:?}");
                assert_eq!(a.imported_macro_files, b.imported_macro_files, "{text:?}");
                assert_eq!(a.name, b.name);
                assert_eq!(a.path, b.path);
            }
            (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text:?}"),
            (a, b) => panic!("{text:?}: ours {:?}, Tera's {:?}", a.is_ok(), b.is_ok()),
        }
    }

    #[test]
    fn the_built_in_templates_parse_as_tera_parses_them_and_most_text_is_set_aside() {
        for (name, text) in crate::render::templates::EMBEDDED {
            same(text);
            let (disguised, runs) = set_aside(text).expect(name);
            assert!(!runs.is_empty() || !text.contains("<p"), "{name}");
            if name == crate::render::templates::HTML {
                assert!(
                    disguised.len() * 3 < text.len(),
                    "{name}: {}",
                    disguised.len()
                );
            }
        }
    }

    #[test]
    fn whitespace_control_trims_around_text_as_tera_does() {
        same("  <p>a</p>  {%- if x -%}  b c  {%- else %} d\n{% endif -%}\n\t e \n");
        same("{{- x -}}  text  {{ y -}}\n\n more \u{a0}\u{2003}{%- if z %}{% endif %}");
        same("\u{a0}\u{2003}word\u{3000}{{- x }}\u{3000}");
        same("   {% for i in xs -%}  row {{ i }}  {%- else -%} none {%- endfor %}  ");
        same("a\r\nb {# note #} c\r\n{#- note -#} d");
        // Each of these took the quick way.
        for text in [
            "  <p>a</p>  {%- if x -%}  b c  {%- else %} d\n{% endif -%}\n\t e \n",
            "\u{a0}\u{2003}word\u{3000}{{- x }}\u{3000}",
        ] {
            assert!(set_aside_and_parse("t.html", text).is_some(), "{text:?}");
        }
    }

    #[test]
    fn blocks_macros_and_inheritance_keep_their_text() {
        same(
            "{% extends \"base.html\" %}{% block body %} text {{ super() }} more {% endblock body %}",
        );
        same(
            "{% import \"m.html\" as m %}\n{% macro row(a, b=1) %} <td>{{ a }}</td> text {% endmacro row %}",
        );
        same("{% block outer %} A {% block inner -%} B {%- endblock %} C {% endblock %}");
        same("{% filter upper %} shout {{ x }} here {% endfilter %} tail");
        same("{% set y = \"{{ not a tag }}\" %} t {% set_global z = '%}' %} u {{ `}}` }} v");
        for text in [
            "{% extends \"base.html\" %}{% block body %} text {{ super() }} more {% endblock body %}",
            "{% macro row(a, b=1) %} <td>{{ a }}</td> text {% endmacro row %}",
            "{% block outer %} A {% block inner -%} B {%- endblock %} C {% endblock %}",
        ] {
            assert!(set_aside_and_parse("t.html", text).is_some(), "{text:?}");
        }
    }

    #[test]
    fn what_only_tera_reads_goes_to_tera() {
        for text in [
            "a {% raw %} {{ kept }} text {% endraw %} b",
            "a {%- raw -%} {{ kept }} {%- endraw -%} b",
            "text with \u{f8f0}0\u{f8f1} already",
            "text with \u{f8f1} alone",
            "open {{ x ",
            "open {% if x ",
            "open {# comment ",
        ] {
            same(text);
            assert!(set_aside_and_parse("t.html", text).is_none(), "{text:?}");
        }
        assert!(set_aside("a {% raw %} x {% endraw %}").is_none());
        assert!(set_aside("a \u{f8f0} b").is_none());
    }

    #[test]
    fn errors_are_teras_own_with_the_real_line() {
        for text in [
            "line one\nline two\n{{ x | }}\n",
            "text {% if %} more",
            "{% endif %} text",
            "text {{ a + }} text",
            "{% block a %}{% endblock %}{% block a %}{% endblock %}",
            "text {% extends \"x\" %}",
        ] {
            same(text);
            assert!(template("t.html", text).is_err(), "{text:?}");
        }
    }

    /// Templates put together at random from pieces that exercise every path: text with
    /// edge whitespace, tags with whitespace control and strings holding delimiters, nested
    /// sections, comments, stray braces.
    #[test]
    fn random_templates_parse_as_tera_parses_them() {
        const PIECES: [&str; 30] = [
            " <p>Hello</p> ",
            "plain",
            "\n\n",
            " \u{a0}",
            "{",
            "}",
            "%",
            "#",
            "{{ x }}",
            "{{- x -}}",
            "{{ \"}}\" }}",
            "{{ a | default(value='%}') }}",
            "{% if x %}",
            "{%- if y -%}",
            "{% elif z %}",
            "{% else %}",
            "{% endif %}",
            "{%- endif -%}",
            "{% for i in xs %}",
            "{% endfor %}",
            "{# c #}",
            "{#- {{ c }} -#}",
            "{% block b %}",
            "{% endblock %}",
            "{% macro m(a) %}",
            "{% endmacro %}",
            "{% set v = `x` %}",
            "{{ super() }}",
            "{% break %}",
            "\t tail \r\n",
        ];
        // A fixed generator (xorshift): the same templates every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut parsed, mut quick) = (0, 0);
        for _ in 0..3000 {
            let len = 1 + next() % 12;
            let text: String = (0..len)
                .map(|_| PIECES[usize::try_from(next() % 30).expect("small")])
                .collect();
            same(&text);
            parsed += usize::from(Template::new("t.html", None, &text).is_ok());
            quick += usize::from(set_aside_and_parse("t.html", &text).is_some());
        }
        // Both outcomes are exercised, and most templates that parse take the quick way.
        assert!(parsed > 300, "{parsed}");
        assert!(quick * 10 > parsed * 9, "{quick} of {parsed}");
    }
}
