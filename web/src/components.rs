//! Reusable widgets.

pub mod layout;
pub mod sign_in;
pub mod snippets;
pub mod widgets;
