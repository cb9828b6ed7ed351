//! Browser tests live in `tests/browser.rs`; this crate has no library code.
