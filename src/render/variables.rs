//! Every variable a template names, in every branch, checked against what the templates
//! are given. Rendering finds a misspelling only in the branches the example edition
//! takes; this reads the template's syntax tree (Tera's own parser) instead, so
//! `{% if articles | length > 50 %}{{ edition.titel }}{% endif %}` is caught by `check`.

use std::collections::HashMap;

use tera::ast::{Expr, ExprVal, Node};

/// What a name holds: a value with fields, a list, or a plain value (string, number,
/// boolean, or anything a template made itself).
#[derive(Debug, Clone)]
enum Shape {
    Fields(Vec<(String, Shape)>),
    List(Box<Shape>),
    Value,
}

fn fields(list: &[(&str, Shape)]) -> Shape {
    Shape::Fields(
        list.iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect(),
    )
}

/// The context every template gets (see `compose.rs`); `strings` are the locale's keys.
fn context(strings: &[&str]) -> HashMap<String, Shape> {
    let v = || Shape::Value;
    let image = fields(&[
        ("url", v()),
        ("alt", v()),
        ("caption", v()),
        ("credit", v()),
        ("width", v()),
    ]);
    let article = fields(&[
        ("id", v()),
        ("title", v()),
        ("date", v()),
        ("date_iso", v()),
        ("link", v()),
        ("summary", v()),
        ("author", v()),
        ("tags", Shape::List(Box::new(v()))),
        ("image", image),
        ("body_html", v()),
        ("body_text", v()),
    ]);
    HashMap::from([
        (
            "newsletter".to_string(),
            fields(&[
                ("name", v()),
                ("contact", v()),
                ("website", v()),
                ("list_id", v()),
                ("postal_address", v()),
                ("reason", v()),
            ]),
        ),
        (
            "edition".to_string(),
            fields(&[("id", v()), ("date", v()), ("date_iso", v())]),
        ),
        ("articles".to_string(), Shape::List(Box::new(article))),
        (
            "subscriber".to_string(),
            fields(&[("email", v()), ("name", v()), ("greeting", v())]),
        ),
        ("unsubscribe_url".to_string(), v()),
        ("manage_url".to_string(), v()),
        ("preheader".to_string(), v()),
        ("archive_url".to_string(), v()),
        ("web".to_string(), v()),
        ("lang".to_string(), v()),
        (
            "t".to_string(),
            Shape::Fields(strings.iter().map(|k| ((*k).to_string(), v())).collect()),
        ),
    ])
}

/// The templates `template` includes (`{% include "…" %}`, in any branch).
pub(crate) fn includes(template: &tera::Template) -> Vec<String> {
    fn walk(nodes: &[Node], out: &mut Vec<String>) {
        for node in nodes {
            match node {
                Node::Include(_, names, _) => out.extend(names.iter().cloned()),
                Node::Block(_, b, _) => walk(&b.body, out),
                Node::FilterSection(_, f, _) => walk(&f.body, out),
                Node::Forloop(_, l, _) => {
                    walk(&l.body, out);
                    walk(l.empty_body.as_deref().unwrap_or(&[]), out);
                }
                Node::If(i, _) => {
                    for (_, _, body) in &i.conditions {
                        walk(body, out);
                    }
                    walk(i.otherwise.as_ref().map_or(&[][..], |(_, b)| b), out);
                }
                Node::MacroDefinition(_, m, _) => walk(&m.body, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&template.ast, &mut out);
    for m in template.macros.values() {
        walk(&m.body, &mut out);
    }
    out
}

/// A name a template uses that the context does not have, with the text to find its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unknown {
    pub name: String,
    pub message: String,
}

/// Checks one parsed template. `included`: other templates include this one, so names
/// their loops and `set`s define may reach it; only fields of known names are checked then.
pub(crate) fn check(template: &tera::Template, included: bool, strings: &[&str]) -> Vec<Unknown> {
    let mut walker = Walker {
        scopes: vec![context(strings)],
        lenient: included,
        found: Vec::new(),
    };
    walker.nodes(&template.ast);
    // A macro sees its arguments alone (Tera gives it no context).
    for m in template.macros.values() {
        let mut inner = Walker {
            scopes: vec![m.args.keys().map(|a| (a.clone(), Shape::Value)).collect()],
            lenient: true,
            found: Vec::new(),
        };
        inner.nodes(&m.body);
        walker.found.extend(inner.found);
    }
    walker.found.dedup();
    walker.found
}

struct Walker {
    scopes: Vec<HashMap<String, Shape>>,
    lenient: bool,
    found: Vec<Unknown>,
}

impl Walker {
    fn lookup(&self, root: &str) -> Option<&Shape> {
        self.scopes.iter().rev().find_map(|s| s.get(root))
    }

    fn nodes(&mut self, nodes: &[Node]) {
        for node in nodes {
            self.node(node);
        }
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::VariableBlock(_, e) => self.expr(e),
            Node::Set(_, set) => {
                self.expr(&set.value);
                let shape = self.shape_of(&set.value);
                let scope = if set.global {
                    self.scopes.first_mut()
                } else {
                    self.scopes.last_mut()
                };
                if let Some(scope) = scope {
                    scope.insert(set.key.clone(), shape);
                }
            }
            Node::FilterSection(_, section, _) => {
                self.call_args(&section.filter.args);
                self.nodes(&section.body);
            }
            Node::Block(_, block, _) => self.nodes(&block.body),
            Node::Forloop(_, l, _) => {
                self.expr(&l.container);
                let element = match self.shape_of(&l.container) {
                    Shape::List(e) if l.key.is_none() => *e,
                    _ => Shape::Value,
                };
                let mut scope = HashMap::from([
                    (l.value.clone(), element),
                    ("loop".to_string(), Shape::Value),
                ]);
                if let Some(k) = &l.key {
                    scope.insert(k.clone(), Shape::Value);
                }
                self.scopes.push(scope);
                self.nodes(&l.body);
                self.scopes.pop();
                if let Some(empty) = &l.empty_body {
                    self.nodes(empty);
                }
            }
            Node::If(i, _) => {
                for (_, condition, body) in &i.conditions {
                    self.expr(condition);
                    self.nodes(body);
                }
                if let Some((_, body)) = &i.otherwise {
                    self.nodes(body);
                }
            }
            _ => {}
        }
    }

    fn call_args(&mut self, args: &HashMap<String, Expr>) {
        for e in args.values() {
            self.expr(e);
        }
    }

    fn expr(&mut self, e: &Expr) {
        self.value(&e.val);
        for f in &e.filters {
            self.call_args(&f.args);
        }
    }

    fn value(&mut self, v: &ExprVal) {
        match v {
            ExprVal::Ident(name) => self.ident(name),
            ExprVal::Math(m) => {
                self.expr(&m.lhs);
                self.expr(&m.rhs);
            }
            ExprVal::Logic(l) => {
                self.expr(&l.lhs);
                self.expr(&l.rhs);
            }
            ExprVal::Test(t) => {
                // `is defined` asks whether the name exists: it may not.
                if t.name != "defined" && t.name != "undefined" {
                    self.ident(&t.ident);
                }
                for a in &t.args {
                    self.expr(a);
                }
            }
            ExprVal::MacroCall(m) => self.call_args(&m.args),
            ExprVal::FunctionCall(f) => self.call_args(&f.args),
            ExprVal::Array(items) => {
                for i in items {
                    self.expr(i);
                }
            }
            ExprVal::StringConcat(c) => {
                for v in &c.values {
                    self.value(v);
                }
            }
            ExprVal::In(i) => {
                self.expr(&i.lhs);
                self.expr(&i.rhs);
            }
            ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => {}
        }
    }

    /// What `e` holds, when it is a name the walker knows.
    fn shape_of(&self, e: &Expr) -> Shape {
        match &e.val {
            ExprVal::Ident(name) if e.filters.is_empty() => {
                self.resolve(name).unwrap_or(Shape::Value)
            }
            _ => Shape::Value,
        }
    }

    /// Follows `a.b.0.c` through the shapes; `None` where it leaves what is known.
    fn resolve(&self, name: &str) -> Option<Shape> {
        let mut parts = name.split('.');
        let mut shape = self.lookup(parts.next()?)?.clone();
        for part in parts {
            shape = match shape {
                Shape::Fields(f) => f.iter().find(|(k, _)| *k == part)?.1.clone(),
                Shape::List(e) if part.parse::<usize>().is_ok() => *e,
                Shape::List(_) | Shape::Value => return None,
            };
        }
        Some(shape)
    }

    fn ident(&mut self, name: &str) {
        if name.contains('[') || name.starts_with("__tera") {
            return; // computed keys and Tera's own names
        }
        let mut parts = name.split('.');
        let root = parts.next().unwrap_or_default();
        let Some(mut shape) = self.lookup(root).cloned() else {
            if !self.lenient {
                self.found.push(Unknown {
                    name: name.to_string(),
                    message: format!("`{root}` is not a variable templates are given"),
                });
            }
            return;
        };
        let mut path = root.to_string();
        for part in parts {
            shape = match shape {
                Shape::Fields(f) => {
                    if let Some((_, s)) = f.iter().find(|(k, _)| *k == part) {
                        s.clone()
                    } else {
                        let known: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
                        self.found.push(Unknown {
                            name: name.to_string(),
                            message: format!(
                                "`{path}` has no field `{part}` (it has {})",
                                known.join(", ")
                            ),
                        });
                        return;
                    }
                }
                Shape::List(e) if part.parse::<usize>().is_ok() => *e,
                Shape::List(_) => {
                    self.found.push(Unknown {
                        name: name.to_string(),
                        message: format!(
                            "`{path}` is a list: take an item (`{path}.0`) or loop over it"
                        ),
                    });
                    return;
                }
                Shape::Value => return,
            };
            path.push('.');
            path.push_str(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        crate::locale::Locale::english()
            .strings
            .into_keys()
            .collect()
    }

    fn check(name: &str, source: &str, included: bool) -> Vec<Unknown> {
        let keys = keys();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let template = tera::Template::new(name, None, source).expect("a template");
        super::check(&template, included, &keys)
    }

    fn names(source: &str) -> Vec<String> {
        check("t.html", source, false)
            .into_iter()
            .map(|u| u.message)
            .collect()
    }

    #[test]
    fn misspellings_in_branches_not_taken_are_found() {
        assert_eq!(
            names("{% if articles | length > 50 %}{{ edition.titel }}{% endif %}"),
            ["`edition` has no field `titel` (it has id, date, date_iso)"]
        );
        assert_eq!(
            names(
                "{% for a in articles %}{% if a.image %}{{ a.image.widht }}{% endif %}{% endfor %}"
            ),
            ["`a.image` has no field `widht` (it has url, alt, caption, credit, width)"]
        );
        let misspelt = names("{{ t.unsubscrbe }}");
        assert_eq!(misspelt.len(), 1);
        assert!(
            misspelt[0].starts_with("`t` has no field `unsubscrbe` (it has "),
            "{misspelt:?}"
        );
        assert!(names("{{ t.unsubscribe }} {{ lang }}").is_empty());
        assert_eq!(
            names("{{ subscriber.emial }} {{ unknown_thing }}"),
            [
                "`subscriber` has no field `emial` (it has email, name, greeting)",
                "`unknown_thing` is not a variable templates are given"
            ]
        );
    }

    #[test]
    fn loops_sets_macros_and_the_built_in_templates_pass() {
        assert!(names("{% set n = articles | length %}{{ n }}{{ articles.0.title }}{% for t in articles.0.tags %}{{ t }}{{ loop.index }}{% endfor %}{% if x is defined %}{% endif %}").is_empty());
        assert!(names("{% macro m(a) %}{{ a.anything }}{% endmacro %}").is_empty());
        for (name, source) in crate::render::templates::EMBEDDED {
            assert_eq!(check(name, source, false), vec![], "{name}");
        }
    }

    #[test]
    fn includes_are_read_from_every_branch() {
        let includes = |source: &str| {
            super::includes(&tera::Template::new("t", None, source).expect("a template"))
        };
        assert_eq!(
            includes(
                "{% if x %}{% include \"a.html\" %}{% else %}{% for i in y %}{% include \"b.html\" %}{% endfor %}{% endif %}"
            ),
            ["a.html", "b.html"]
        );
        assert!(includes("no include here, though the word include appears").is_empty());
    }
}
