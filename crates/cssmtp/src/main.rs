//! The `cssmtp` command: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use cssmtp::cli::{Cli, Command, LogFormat};
use cssmtp::commands;

/// The log mask the command line asks for, if it does.
fn command_line_mask(cli: &Cli, quiet_by_default: bool) -> Option<u32> {
    use cssmtp::logging::{ALL, DEFAULT, DETAIL, ERROR, WARNING};
    match (cli.quiet, cli.verbose) {
        (true, _) => Some(ERROR | WARNING),
        (false, 0) if quiet_by_default => Some(ERROR | WARNING),
        (false, 0) => None,
        (false, 1) => Some(DEFAULT | DETAIL),
        (false, _) => Some(ALL),
    }
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Invoked as sendmail/mailq/newaliases (a symbolic link) or `cssmtp sendmail`: the
    // bridge, the one command that may keep a setgid privilege (see cssmtp::sendmail).
    if let Some(invocation) = cssmtp::sendmail::invocation(&argv) {
        return ExitCode::from(cssmtp::sendmail::main(invocation));
    }
    // Every other command runs with the caller's own user and group.
    if let Err(e) = cssmtp::sendmail::drop_privileges() {
        eprintln!("cssmtp: cannot give up the setgid/setuid privileges: {e}");
        return ExitCode::from(commands::EXIT_FATAL);
    }
    let cli = Cli::parse_from(argv);
    let quiet_by_default = matches!(
        cli.command,
        Command::Check { .. }
            | Command::Submit { .. }
            | Command::Modify { .. }
            | Command::Trace { .. }
    );
    let format = match cli.log_format {
        LogFormat::Json => cssmtp::logging::Format::Json,
        LogFormat::Text => cssmtp::logging::Format::Text,
    };
    cssmtp::logging::init(format, command_line_mask(&cli, quiet_by_default));
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
