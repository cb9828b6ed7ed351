//! Reusable widgets.

pub mod layout;
pub mod snippets;
pub mod widgets;
