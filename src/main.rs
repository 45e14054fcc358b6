//! `mash`: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = mash::cli::Cli::parse();
    match mash::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line, also when logging is not set up yet (a config error).
            eprintln!("mash: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
