//! CSV as RFC 4180 writes it and spreadsheet exports bend it: quoted fields with commas,
//! doubled quotes and line breaks inside, CRLF or LF, a byte-order mark before the header.

/// One record and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Every record of `text`; a blank line is not a record. A quote left open runs to the
/// end of the text, as spreadsheet programs read it.
pub(crate) fn parse(text: &str) -> Vec<Record> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => fields.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                push(&mut records, start, std::mem::take(&mut fields));
                line += 1;
                start = line;
            }
            c => field.push(c),
        }
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        push(&mut records, start, fields);
    }
    records
}

fn push(records: &mut Vec<Record>, line: usize, fields: Vec<String>) {
    if fields.iter().all(|f| f.trim().is_empty()) {
        return;
    }
    records.push(Record { line, fields });
}

/// A field for a CSV file: quoted when it holds a comma, a quote or a line break.
pub(crate) fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_commas_and_line_breaks_inside_fields() {
        let text = "\u{feff}Email Address,First Name,TAGS\r\nada@example.org,\"Ada, Countess\",\"\"\"VIP\"\",\"\"Blog\"\"\"\r\n\r\nbob@example.net,\"two\nlines\",\r\ncy@example.com";
        let r = parse(text);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].fields, ["Email Address", "First Name", "TAGS"]);
        assert_eq!(
            r[1].fields,
            ["ada@example.org", "Ada, Countess", "\"VIP\",\"Blog\""]
        );
        assert_eq!((r[2].line, r[2].fields[1].as_str()), (4, "two\nlines"));
        assert_eq!((r[3].line, r[3].fields.len()), (6, 1));
        assert_eq!(field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(field("plain"), "plain");
    }
}
