//! The `hush` binary. All behaviour lives in the library (`hush::cli`), so tests drive the same
//! code; this file only hands over the process arguments.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    hush::cli::main().await
}
