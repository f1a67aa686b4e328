//! Fixed widths in an HTML template that a phone cannot show: what `check` warns about in
//! a user's own template, with its file and line.

/// The narrowest phone screen a message must fit, in CSS pixels.
pub(crate) const NARROWEST: u32 = 320;

/// Fixed widths wider than `NARROWEST` in an HTML template's source: `width:Npx` and
/// `min-width:Npx` in a style attribute or a `<style>` block, and a `width="N"` attribute
/// that no `width` in the element's style overrides. Conditional comments (`<!--[if mso]>`)
/// are left out: only Outlook reads them, and it needs fixed widths. Returns (line, what).
pub(crate) fn fixed_widths(source: &str) -> Vec<(usize, String)> {
    // Comments blanked, newlines kept, so offsets still give line numbers.
    let mut text = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("<!--") {
        text.push_str(&rest[..start]);
        let end = rest[start..]
            .find("-->")
            .map_or(rest.len(), |e| start + e + 3);
        text.extend(
            rest[start..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        rest = &rest[end..];
    }
    text.push_str(rest);
    let line = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    // <style> blocks: declarations outside @media conditions.
    for (start, _) in text.match_indices("<style") {
        let end = text[start..]
            .find("</style>")
            .map_or(text.len(), |e| start + e);
        for (offset, decl) in css_widths(&text[start..end]) {
            found.push((line(start + offset), decl));
        }
    }
    // Elements: their style attribute, else their width attribute.
    for (start, _) in text.match_indices('<') {
        let end = text[start..].find('>').map_or(text.len(), |e| start + e);
        let tag = &text[start..end];
        if tag.starts_with("<style") || tag.starts_with("</") || tag.starts_with("<!") {
            continue;
        }
        let style = attribute(tag, "style").unwrap_or("");
        let styled = css_widths(style);
        let style_sets_width = style
            .split(';')
            .any(|d| d.split(':').next().is_some_and(|p| p.trim() == "width"));
        if !styled.is_empty() {
            for (_, decl) in styled {
                found.push((line(start), decl));
            }
        } else if !style_sets_width
            && let Some(n) = attribute(tag, "width")
                .and_then(|w| w.trim().trim_end_matches("px").parse::<u32>().ok())
            && n > NARROWEST
        {
            found.push((line(start), format!("width=\"{n}\"")));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `width` and `min-width` declarations in pixels above `NARROWEST` in some CSS, with their
/// offsets; `@media` conditions are not declarations.
fn css_widths(css: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for part in css.split_inclusive([';', '{', '}']) {
        let decl = part.trim_end_matches([';', '{', '}']).trim();
        if let Some((property, value)) = decl.split_once(':')
            && !decl.starts_with('@')
            && !decl.contains('(')
        {
            let property = property
                .trim()
                .rsplit([' ', '\n', '\t'])
                .next()
                .unwrap_or("");
            let value = value.trim().trim_end_matches("!important").trim();
            if (property == "width" || property == "min-width")
                && let Some(n) = value
                    .strip_suffix("px")
                    .and_then(|n| n.trim().parse::<u32>().ok())
                && n > NARROWEST
            {
                out.push((
                    offset + part.find(property).unwrap_or(0),
                    format!("{property}:{n}px"),
                ));
            }
        }
        offset += part.len();
    }
    out
}

/// The value of `name="…"` in a tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = tag[from..].find(name) {
        let at = from + i;
        let before = tag[..at].chars().last();
        let after = &tag[at + name.len()..];
        if before.is_some_and(char::is_whitespace)
            && let Some(v) = after.strip_prefix("=\"")
        {
            return v.split('"').next();
        }
        from = at + name.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_widths_wider_than_a_phone_are_found_with_their_line() {
        let old = "<style>\n  .card { width: 600px; }\n  @media (max-width: 480px) { .x { padding: 0 } }\n</style>\n\
                   <table width=\"600\" style=\"width:600px; max-width:100%\">\n\
                   <img width=\"600\" style=\"width:100%; max-width:600px\">\n\
                   <td width=\"560\">\n\
                   <!--[if mso]><table width=\"600\"><![endif]-->\n\
                   <div style=\"min-width: 400px\">";
        assert_eq!(
            fixed_widths(old),
            vec![
                (2, "width:600px".to_string()),
                (5, "width:600px".to_string()),
                (7, "width=\"560\"".to_string()),
                (9, "min-width:400px".to_string()),
            ]
        );
    }

    #[test]
    fn the_built_in_template_has_no_fixed_width_a_phone_cannot_show() {
        let html = crate::render::templates::EMBEDDED
            .iter()
            .find(|(n, _)| *n == crate::render::templates::HTML)
            .unwrap()
            .1;
        assert_eq!(fixed_widths(html), vec![]);
    }
}
