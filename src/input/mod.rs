//! Reading what the user writes: addresses and names, the subscriber list, article files
//! and their Markdown bodies. Each file is checked whole, every problem with its line.

pub mod address;
pub mod articles;
pub mod markdown;
pub mod subscribers;
