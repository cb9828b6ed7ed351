//! Reusable widgets.

pub mod layout;
pub mod widgets;
