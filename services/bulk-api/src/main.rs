//! Runs bulk-api.
fn main() {}
