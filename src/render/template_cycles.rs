//! Finds includes and macro calls that would recurse without end. Tera has no depth
//! limit: a template that includes itself, or a macro that calls itself, overflows the
//! stack and aborts the process. They are refused when the templates load, with the line.

use std::collections::{BTreeMap, BTreeSet};

/// One edge of the call graph: from a template (or a macro in it) to another, at a line.
#[derive(Debug, Clone)]
struct Edge {
    to: Node,
    line: usize,
}

/// A template file, or a macro inside one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    File(String),
    Macro(String, String),
}

impl Node {
    fn describe(&self) -> String {
        match self {
            Node::File(f) => f.clone(),
            Node::Macro(f, m) => format!("{f}::{m}"),
        }
    }
}

/// A cycle found: the template it starts in, the line of its first step, and a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cycle {
    pub template: String,
    pub line: usize,
    pub message: String,
}

/// The tags (`{% … %}`) and expressions (`{{ … }}`) of a template, with their lines.
fn tags(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start..];
        let close = if after.starts_with("{%") {
            "%}"
        } else if after.starts_with("{{") {
            "}}"
        } else {
            offset += start + 1;
            rest = &rest[start + 1..];
            continue;
        };
        let Some(len) = after.find(close) else { break };
        let inner = &after[2..len];
        let line = text[..offset + start].matches('\n').count() + 1;
        out.push((
            line,
            inner.trim_matches(|c: char| c == '-' || c.is_whitespace()),
        ));
        offset += start + len + 2;
        rest = &rest[start + len + 2..];
    }
    out
}

/// The quoted strings in a tag, e.g. the names in `include ["a.html", "b.html"]`.
fn quoted(tag: &str) -> Vec<String> {
    tag.split(['"', '\''])
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// `alias::name(` calls in an expression or tag.
fn macro_calls(tag: &str) -> Vec<(String, String)> {
    let mut calls = Vec::new();
    for (i, _) in tag.match_indices("::") {
        let alias: String = tag[..i]
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let name: String = tag[i + 2..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !alias.is_empty()
            && !name.is_empty()
            && tag[i + 2 + name.len()..].trim_start().starts_with('(')
        {
            calls.push((alias, name));
        }
    }
    calls
}

fn edges(name: &str, text: &str) -> BTreeMap<Node, Vec<Edge>> {
    let mut graph: BTreeMap<Node, Vec<Edge>> = BTreeMap::new();
    let tags = tags(text);
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    aliases.insert("self".into(), name.to_string());
    for (_, tag) in &tags {
        if let Some(rest) = tag.strip_prefix("import ")
            && let (Some(file), Some(alias)) = (quoted(rest).first(), rest.rsplit(" as ").next())
        {
            aliases.insert(alias.trim().to_string(), file.clone());
        }
    }
    let mut current = Node::File(name.to_string());
    for (line, tag) in tags {
        if let Some(rest) = tag.strip_prefix("macro ") {
            let m: String = rest
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            current = Node::Macro(name.to_string(), m);
            continue;
        }
        if tag.starts_with("endmacro") {
            current = Node::File(name.to_string());
            continue;
        }
        if let Some(rest) = tag.strip_prefix("include ") {
            for target in quoted(rest) {
                graph.entry(current.clone()).or_default().push(Edge {
                    to: Node::File(target),
                    line,
                });
            }
        }
        for (alias, m) in macro_calls(tag) {
            if let Some(file) = aliases.get(&alias) {
                graph.entry(current.clone()).or_default().push(Edge {
                    to: Node::Macro(file.clone(), m),
                    line,
                });
            }
        }
    }
    graph
}

/// Every cycle among `templates` (name → text), each reported once, at its first step.
pub(crate) fn find(templates: &BTreeMap<String, String>) -> Vec<Cycle> {
    let mut graph: BTreeMap<Node, Vec<Edge>> = BTreeMap::new();
    for (name, text) in templates {
        for (node, out) in edges(name, text) {
            graph.entry(node).or_default().extend(out);
        }
    }
    // A macro's own includes and calls also run wherever its file is included: the file
    // reaches what its macros reach only when called, so macros and files stay apart.
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<Node> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        if let Some(path) = path_back(&graph, start) {
            reported.extend(path.iter().map(|(n, _)| n.clone()));
            let (template, line) = match start {
                Node::File(f) | Node::Macro(f, _) => (f.clone(), path[0].1),
            };
            let steps: Vec<String> = std::iter::once(start.describe())
                .chain(path.iter().map(|(n, _)| n.describe()))
                .collect();
            let message = match start {
                Node::File(_) if path.len() == 1 => format!(
                    "the template includes itself ({}): it would never end",
                    steps.join(" → ")
                ),
                Node::File(_) => format!(
                    "the templates include each other ({}): they would never end",
                    steps.join(" → ")
                ),
                Node::Macro(_, m) => format!(
                    "macro {m} calls itself ({}): recursion in templates would never end; write it without",
                    steps.join(" → ")
                ),
            };
            cycles.push(Cycle {
                template,
                line,
                message,
            });
        }
    }
    cycles
}

/// The shortest path of edges from `start` back to itself, with each step's line.
fn path_back(graph: &BTreeMap<Node, Vec<Edge>>, start: &Node) -> Option<Vec<(Node, usize)>> {
    let mut seen: BTreeSet<&Node> = BTreeSet::new();
    let mut frontier: Vec<(&Node, Vec<(Node, usize)>)> = vec![(start, Vec::new())];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for (node, path) in frontier {
            for edge in graph.get(node).into_iter().flatten() {
                let mut p = path.clone();
                p.push((edge.to.clone(), edge.line));
                if &edge.to == start {
                    return Some(p);
                }
                if seen.insert(&edge.to) {
                    next.push((&edge.to, p));
                }
            }
        }
        frontier = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
            .collect()
    }

    #[test]
    fn a_template_including_itself_is_a_cycle_at_its_line() {
        let found = find(&of(&[(
            "digest.html",
            "<p>\n{%- include \"digest.html\" -%}\n",
        )]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].template.as_str(), found[0].line),
            ("digest.html", 2)
        );
        assert!(found[0].message.contains("includes itself"));
    }

    #[test]
    fn templates_including_each_other_and_recursive_macros_are_cycles() {
        let found = find(&of(&[
            ("a.html", "{% include \"b.html\" %}"),
            ("b.html", "x\n{% include \"a.html\" %}"),
            (
                "m.txt",
                "{% import \"n.txt\" as n %}\n{% macro one() %}{{ n::two() }}{% endmacro one %}",
            ),
            (
                "n.txt",
                "{% import \"m.txt\" as m %}{% macro two() %}{{ m::one() }}{% endmacro %}",
            ),
        ]));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].message.contains("include each other"), "{found:?}");
        assert!(
            found[1].message.contains("macro one calls itself"),
            "{found:?}"
        );
    }

    #[test]
    fn ordinary_includes_and_macros_are_not_cycles() {
        let found = find(&of(&[
            (
                "digest.html",
                "{% import \"m.html\" as m %}{% include \"footer.html\" %}{{ m::card(a=1) }}",
            ),
            ("footer.html", "bye"),
            (
                "m.html",
                "{% macro card(a) %}{{ self::badge() }}{% endmacro %}{% macro badge() %}b{% endmacro %}",
            ),
        ]));
        assert!(found.is_empty(), "{found:?}");
    }
}
