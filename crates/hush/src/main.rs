//! The hush binary.
fn main() {}
