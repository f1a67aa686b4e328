//! From an edition and a recipient to text: the Tera templates (embedded defaults,
//! project overrides, checked for endless recursion), composition per recipient, and the
//! checks inbox providers care about; the plain-text part rendered from Markdown for people.

pub(crate) mod compose;
pub(crate) mod lint;
pub(crate) mod parse;
pub(crate) mod plain;
pub(crate) mod template_cycles;
pub(crate) mod templates;
pub(crate) mod variables;
pub(crate) mod widths;
