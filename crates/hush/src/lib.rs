//! The `hush` operator binary as a library: `hush up` (the whole stack in one process on SQLite),
//! `hush serve <service>` (one service, as the container image runs it), `hush token` (dev
//! tokens), `hush deploy-init` (keys and secrets for docker-compose), `hush db-setup` (each service's
//! Postgres database and its own role, without rights to change the schema), `hush edge` (the
//! front-end app and the one origin the browser talks to) and `hush healthcheck`. Benchmarks,
//! the process cluster and the synthetic export live in `hush-dev`, outside what operators run.

pub mod audit;
pub mod bulk;
pub mod cli;
pub mod dbsetup;
pub mod deploy;
pub mod edge;
pub mod groups;
pub mod migrate;
pub mod stack;
