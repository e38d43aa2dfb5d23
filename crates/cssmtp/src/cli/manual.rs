//! The manual pages and shell completions, generated from the command line
//! ([`super::Cli`], through clap_mangen and clap_complete) and the statement table
//! ([`crate::config::manual`]): `cssmtp manpage --dir DIR` writes cssmtp.8 and
//! cssmtp.conf.5, `cssmtp completions SHELL` prints a completion script. Both
//! subcommands are hidden: they are for packagers (the Debian package installs their
//! output).

use std::path::Path;

use clap::{Arg, CommandFactory};
use roff::{Roff, bold, italic, roman};

use super::Cli;
use super::exit::{CODES, EXIT_FATAL, EXIT_OK, plain};

/// The command line as clap sees it, built (global options propagated).
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// `-c, --config <CONFIG>`, `<FILES>...`: how an option is written.
fn arg_form(arg: &Arg) -> Vec<roff::Inline> {
    let mut form = Vec::new();
    let names: Vec<String> = arg.get_value_names().map_or_else(
        || vec![arg.get_id().as_str().to_ascii_uppercase()],
        |v| v.iter().map(|n| n.as_str().to_owned()).collect(),
    );
    let takes_value = arg.get_action().takes_values();
    if arg.is_positional() {
        let dots = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            "..."
        } else {
            ""
        };
        form.push(italic(format!("{}{dots}", names.join(" "))));
        return form;
    }
    if let Some(short) = arg.get_short() {
        form.push(bold(format!("-{short}")));
    }
    if let Some(long) = arg.get_long() {
        if !form.is_empty() {
            form.push(roman(", "));
        }
        form.push(bold(format!("--{long}")));
    }
    if takes_value {
        form.push(roman(" "));
        form.push(italic(names.join(" ")));
    }
    form
}

/// An option's help, with its default, environment variable and possible values.
fn arg_help(arg: &Arg) -> String {
    let mut help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    if !help.is_empty() && !help.ends_with('.') {
        help.push('.');
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect();
    if !values.is_empty() && arg.get_action().takes_values() {
        help.push_str(&format!(" One of: {}.", values.join(", ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && arg.get_action().takes_values() {
        help.push_str(&format!(" Default: {}.", defaults.join(" ")));
    }
    if let Some(env) = arg.get_env() {
        help.push_str(&format!(" Environment: {}.", env.to_string_lossy()));
    }
    help
}

fn options<'a>(roff: &mut Roff, args: impl Iterator<Item = &'a Arg>) {
    for arg in args {
        roff.control("TP", []);
        roff.text(arg_form(arg));
        roff.text([roman(arg_help(arg))]);
    }
}

/// Lines kept as they are (`.nf`), e.g. an after-help text.
fn verbatim(roff: &mut Roff, text: &str) {
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
}

fn shown(arg: &&Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version")
}

/// cssmtp(8), in roff.
pub fn cssmtp_page() -> String {
    let cmd = command();
    let version = env!("CARGO_PKG_VERSION");
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .source(format!("cssmtp {version}"))
        .manual("System Manager's Manual");
    let mut out = Vec::new();
    // Writing into a Vec does not fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let mut roff = Roff::new();
    roff.control("SH", ["OPTIONS"]);
    roff.text([roman(
        "These options may be given before or after the command and its arguments.",
    )]);
    options(&mut roff, cmd.get_arguments().filter(shown));
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        roff.control("SS", [format!("cssmtp {}", sub.get_name()).as_str()]);
        let usage = sub.clone().render_usage().to_string();
        let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage).to_owned();
        roff.text([bold(usage)]);
        roff.control("PP", []);
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(ToString::to_string)
            .unwrap_or_default();
        roff.text([roman(about)]);
        options(
            &mut roff,
            sub.get_arguments()
                .filter(shown)
                .filter(|a| !a.is_global_set()),
        );
        if let Some(after) = sub.get_after_help() {
            roff.control("PP", []);
            verbatim(&mut roff, &after.to_string());
        }
    }
    roff.control("SH", ["EXIT STATUS"]);
    for code in CODES {
        roff.control("TP", []);
        roff.text([bold(code.code.to_string())]);
        roff.text([roman(plain(code.meaning))]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in [
        (
            "CSSMTP_CONFIG",
            "the configuration file when -c is not given",
        ),
        (
            "CSSMTP_LOG",
            "a tracing filter that replaces LogLevel, -q and -v (for debugging)",
        ),
        (
            "CSSMTP_JOBNAME, CSSMTP_JOBID",
            "the job name and job ID cssmtp submit records by default",
        ),
        (
            "NO_COLOR",
            "when set and not empty, no colour in the log or the help, even on a terminal \
(without a terminal there is none)",
        ),
        (
            "JOURNAL_STREAM",
            "set by systemd: log lines carry their syslog priority and no time stamp",
        ),
        (
            "NOTIFY_SOCKET, WATCHDOG_USEC",
            "set by systemd for a Type=notify service: cssmtp run says when it is ready \
and stopping, and pings the watchdog",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (name, meaning) in [
        (
            "/etc/cssmtp/cssmtp.conf",
            "the configuration (cssmtp.conf(5))",
        ),
        (
            "/var/spool/cssmtp/WRITER/",
            "the writer directory, where producers drop batch-SMTP files (mode 3730); \
active/, hold/, reports/, deadletter/, mail/, checkpoint/ and accounting/ below it are \
the daemon's",
        ),
        (
            "/run/cssmtp/WRITER.sock",
            "the control socket cssmtp modify talks to",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("cssmtp.conf"),
        roman("(5), "),
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1); the unit cssmtp@WRITER.service runs one daemon per writer name."),
    ]);
    roff.control("SH", ["VERSION"]);
    verbatim(&mut roff, super::version::long());
    let mut text = String::from_utf8_lossy(&out).into_owned();
    // Each part repeats roff's preamble; keep the first.
    let body = roff.render();
    text.push_str(
        body.split_once('\n')
            .map_or(body.as_str(), |(_, rest)| rest),
    );
    text
}

/// `cssmtp manpage --dir DIR`: writes DIR/man8/cssmtp.8 and DIR/man5/cssmtp.conf.5
/// (DIR as /usr/local/share/man).
pub fn write_pages(dir: &Path) -> u8 {
    let pages = [
        ("man8", "cssmtp.8", cssmtp_page()),
        (
            "man5",
            "cssmtp.conf.5",
            crate::config::manual::page(env!("CARGO_PKG_VERSION")),
        ),
    ];
    for (section, name, text) in pages {
        let dir = dir.join(section);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("cssmtp manpage: cannot create {}: {e}", dir.display());
            return EXIT_FATAL;
        }
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cssmtp manpage: cannot write {}: {e}", path.display());
            return EXIT_FATAL;
        }
        println!("{}", path.display());
    }
    EXIT_OK
}

/// `cssmtp completions SHELL`: the script on standard output.
pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "cssmtp", &mut std::io::stdout());
    EXIT_OK
}
