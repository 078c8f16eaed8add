//! Tracing set-up shared by all services and `hush up`. Plain text by default (coloured only on a
//! terminal, and never with `NO_COLOR` set); JSON when `HUSH_LOG_FORMAT=json`. Filter with `RUST_LOG` (default `info`).
//!
//! INV-6: spans are named after the route template (`MatchedPath`), never the raw URI, and no
//! layer here records a caller's identity; handlers on membership paths must not either.

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Installs the global subscriber once; later calls are no-ops (tests and `hush up` may call it
/// more than once).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HUSH_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()
    } else {
        // Colour only when a person reads the log on a terminal: written to a file or a pipe,
        // escape codes are noise (and `NO_COLOR` turns them off everywhere).
        let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        registry.with(fmt::layer().with_ansi(colour)).try_init()
    };
}

/// For tests: output captured by the test harness, filtered by `RUST_LOG` (default `warn`).
pub fn init_for_test() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_test_writer())
        .try_init();
}
