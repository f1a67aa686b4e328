//! From an edition and a recipient to text: the Tera templates (embedded defaults,
//! project overrides, checked for endless recursion), composition per recipient, and the
//! checks inbox providers care about.

pub mod compose;
pub mod lint;
pub mod template_cycles;
pub mod templates;
