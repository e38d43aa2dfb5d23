//! The `cssmtp` command: parses the command line and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use cssmtp::cli::{Cli, Command, LogFormat};
use cssmtp::commands;

fn init_logging(cli: &Cli, default: &str) {
    let level = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => default,
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CSSMTP_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hickory=warn,rustls=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.compact().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Check { .. } | Command::Submit { .. } => "warn",
        _ => "info",
    };
    init_logging(&cli, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cssmtp: cannot start the runtime: {e}");
            return ExitCode::from(commands::EXIT_FATAL);
        }
    };
    ExitCode::from(runtime.block_on(commands::dispatch(cli.command)))
}
