//! Runs membership-api.
fn main() {}
