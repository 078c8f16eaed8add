//! Runs isolated-tenant.
fn main() {}
