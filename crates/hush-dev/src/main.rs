//! The `hush-dev` binary. All behaviour lives in the library (`hush_dev::cli`); this file only
//! hands over the process arguments.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    hush_dev::cli::main().await
}
