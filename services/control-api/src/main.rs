//! Runs control-api.
fn main() {}
