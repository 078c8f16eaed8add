//! The `hush` operator binary as a library: `hush up` (the whole stack in one process on SQLite),
//! `hush serve <service>` (one service, as the container image runs it), `hush token` (dev
//! tokens), `hush deploy-init` (keys and secrets for docker-compose) and `hush healthcheck`.

pub mod cli;
pub mod deploy;
pub mod stack;
