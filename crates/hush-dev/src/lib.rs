//! `hush-dev`: the tools developers and CI run and operators never need, kept out of the `hush`
//! binary the image ships. `hush-dev bench …` (measurements that print a table), the process
//! cluster the benchmarks and the cross-process tests start (`cluster`), and `hush-dev
//! gen-legacy` (a synthetic legacy export for `hush migrate`).

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod legacy;
