//! Long-lived bulk membership jobs.
