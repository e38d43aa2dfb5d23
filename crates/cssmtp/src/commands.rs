//! The subcommands, each returning the process exit status.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::RunOptions;
use crate::cli::{Command, SinkArgs};
use crate::config::{self, Config, LoadError, Severity};
use crate::sink::{Sink, SinkOptions};
use crate::spool::SpoolLayout;
use crate::spool::submit::{JobInfo, submit_translated};

pub use crate::cli::exit::{
    EXIT_CONFIG, EXIT_DATAERR, EXIT_FATAL, EXIT_NOT_DELIVERED, EXIT_OK, EXIT_STOPPED,
    EXIT_UNAVAILABLE, EXIT_USAGE,
};

pub async fn dispatch(command: Command) -> u8 {
    match command {
        Command::Run {
            config,
            drain,
            cold,
        } => run(&config, drain, cold).await,
        Command::Check { config } => check(&config),
        Command::Modify {
            config,
            json,
            command,
        } => modify(&config, json, &command.join(",")).await,
        Command::Trace {
            config,
            json,
            since,
            limit,
            trace_dir,
            index,
            value,
        } => {
            let query = crate::trace::Query {
                needle: value,
                since,
                limit,
                index,
            };
            trace(&config, trace_dir.as_deref(), &query, json).await
        }
        Command::Submit {
            config,
            job_name,
            job_id,
            force,
            translate,
            files,
        } => submit_files(&config, job_name, job_id, force, translate, &files).await,
        Command::Sendmail { args } => crate::sendmail::main(crate::sendmail::Invocation {
            name: "cssmtp sendmail".into(),
            mode: crate::sendmail::args::Mode::Deliver,
            args,
        }),
        Command::Sink(args) => sink(args).await,
        Command::Demo { keep } => match crate::demo::run(keep.as_deref(), &mut std::io::stdout())
            .await
        {
            Ok(true) => EXIT_OK,
            Ok(false) => {
                eprintln!("cssmtp demo: the results differ from what the demo expects (see above)");
                EXIT_FATAL
            }
            Err(e) => {
                eprintln!("cssmtp demo: {e:#}");
                EXIT_FATAL
            }
        },
        Command::Manpage { dir } => crate::cli::manual::write_pages(&dir),
        Command::Completions { shell } => crate::cli::manual::completions(shell),
    }
}

/// Loads a configuration, printing its diagnostics to standard error.
pub fn load_config(path: &Path) -> Result<Config, u8> {
    match config::load(path) {
        Ok((config, diagnostics)) => {
            for d in diagnostics {
                eprintln!("{d}");
            }
            Ok(config)
        }
        Err(LoadError::Invalid { diagnostics, .. }) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            let errors = diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            eprintln!("cssmtp: {} has {errors} error(s)", path.display());
            Err(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("cssmtp: {e}");
            Err(EXIT_CONFIG)
        }
    }
}

/// `cssmtp modify`: one operator command to the running daemon.
async fn modify(path: &Path, json: bool, command: &str) -> u8 {
    // Refuse what the daemon would refuse, without bothering it.
    if let Err(e) = crate::control::parse(command) {
        eprintln!(
            "cssmtp modify: {e}\nCommands:\n{}",
            crate::control::command::SYNTAX
        );
        return EXIT_USAGE;
    }
    let socket = match config::control_socket_of(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cssmtp modify: cannot read {}: {e}", path.display());
            return EXIT_CONFIG;
        }
    };
    match crate::control::request(&socket, command).await {
        Ok(reply) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reply).unwrap_or_default()
                );
            } else if reply.ok {
                for line in &reply.lines {
                    println!("{line}");
                }
            } else {
                for line in &reply.lines {
                    eprintln!("{line}");
                }
            }
            if reply.ok { EXIT_OK } else { EXIT_FATAL }
        }
        Err(e) => {
            eprintln!(
                "cssmtp modify: cannot reach the daemon at {}: {e} (is `cssmtp run -c {}` running?)",
                socket.display(),
                path.display()
            );
            EXIT_UNAVAILABLE
        }
    }
}

/// `cssmtp trace`: the trace records, then the daemon's spool tasks.
async fn trace(
    path: &Path,
    trace_dir: Option<&Path>,
    query: &crate::trace::Query,
    json: bool,
) -> u8 {
    let (dir, socket) = match trace_dir {
        Some(dir) => (dir.to_owned(), None),
        None => match config::load(path) {
            Ok((config, _)) => (
                crate::trace::index::directory(&config.accounting_path()),
                Some(config.control_socket()),
            ),
            Err(e) => {
                eprintln!("cssmtp trace: {e}");
                return EXIT_CONFIG;
            }
        },
    };
    match std::fs::read_dir(&dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!(
            "cssmtp trace: no trace records in {} (SMF119 {{ Mail }} writes them); asking the daemon only",
            dir.display()
        ),
        Err(e) => {
            eprintln!(
                "cssmtp trace: cannot read the trace records in {}: {e}",
                dir.display()
            );
            return EXIT_FATAL;
        }
    }
    let searched = {
        let (dir, query) = (dir.clone(), query.clone());
        tokio::task::spawn_blocking(move || crate::trace::search(&dir, &query)).await
    };
    let records = match searched {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => {
            eprintln!(
                "cssmtp trace: cannot read the trace records in {}: {e}",
                dir.display()
            );
            return EXIT_FATAL;
        }
        Err(e) => {
            eprintln!("cssmtp trace: {e}");
            return EXIT_FATAL;
        }
    };
    let (mails, more) = crate::trace::mails(records, query.limit);
    let mut answer = crate::trace::Answer {
        mails,
        more,
        ..crate::trace::Answer::default()
    };
    answer.daemon = match socket {
        None => Err("--trace-dir given".to_owned()),
        Some(socket) => match crate::control::request(&socket, "D,SP,DETAIL,ALL").await {
            Ok(reply) if reply.ok => {
                answer.in_progress = crate::trace::tasks_matching(&reply.data, &query.needle);
                Ok(())
            }
            Ok(reply) => Err(reply.lines.join(" ")),
            Err(e) => Err(format!("not running? {}: {e}", socket.display())),
        },
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::trace::to_json(&answer)).unwrap_or_default()
        );
    } else {
        print!("{}", crate::trace::render(&answer));
    }
    if answer.is_empty() {
        if !json {
            eprintln!(
                "cssmtp trace: no mail matches {:?} (in {} or the running daemon)",
                query.needle,
                dir.display()
            );
        }
        crate::cli::exit::EXIT_NOT_FOUND
    } else {
        EXIT_OK
    }
}

fn check(path: &Path) -> u8 {
    match config::load(path) {
        Ok((config, diagnostics)) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            // The directories cssmtp uses, those that exist (as `run` checks them).
            let unsafe_dirs = crate::spool::checks::check(&config);
            for problem in &unsafe_dirs {
                eprintln!("{problem}");
            }
            if !unsafe_dirs.is_empty() {
                return EXIT_CONFIG;
            }
            println!("{}: OK ({} warning(s))", path.display(), diagnostics.len());
            EXIT_OK
        }
        Err(_) => load_config(path).err().unwrap_or(EXIT_CONFIG),
    }
}

/// Cancels `stop` on the first SIGTERM/SIGINT; a second one ends the process at once.
fn stop_on_signals(stop: CancellationToken) {
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!(
            "CSM1003I Stopping: no new spool files; transactions in progress are completed (signal again to end at once)"
        );
        stop.cancel();
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::warn!("CSM1005W Ending at once");
        std::process::exit(i32::from(EXIT_STOPPED));
    });
}

async fn run(path: &Path, drain: bool, cold: bool) -> u8 {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone());
    crate::logging::apply_config(config.log_level);
    if let Some(n) = crate::listen::raise_nofile_limit() {
        tracing::debug!(
            "CSM1070I Up to {n} open files (RLIMIT_NOFILE soft limit raised to the hard limit)"
        );
    }
    let mut options = if drain {
        RunOptions::drain()
    } else {
        RunOptions::daemon()
    };
    options.cold = cold;
    options.sighup = true;
    match crate::app::run(config, options, stop).await {
        Ok(report) if report.stopped && drain => EXIT_STOPPED,
        Ok(report) if drain && !report.all_delivered() => EXIT_NOT_DELIVERED,
        Ok(_) => EXIT_OK,
        Err(e) if e.is::<crate::spool::checks::UnsafeDirectories>() => {
            if let Some(unsafe_dirs) = e.downcast_ref::<crate::spool::checks::UnsafeDirectories>() {
                for problem in &unsafe_dirs.0 {
                    tracing::error!("{problem}");
                }
            }
            EXIT_CONFIG
        }
        Err(e) => {
            if carries_message_id(&e) {
                // Already a message with its own ID (CSM1002E, another instance).
                tracing::error!("{e:#}");
            } else {
                tracing::error!("CSM1006E cssmtp cannot run: {e:#}");
            }
            EXIT_FATAL
        }
    }
}

/// Whether a start-up error is a message with its own ID (told by its type, not by
/// its text).
fn carries_message_id(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<crate::spool::layout::LockError>(),
        Some(crate::spool::layout::LockError::Held { .. })
    )
}

async fn submit_files(
    path: &Path,
    job_name: Option<String>,
    job_id: Option<String>,
    force: bool,
    translate: Option<crate::spool::translate::FilePage>,
    files: &[PathBuf],
) -> u8 {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let layout = SpoolLayout::new(config.writer_spool());
    let database = config.spool_database();
    // Only the writer directory: the private ones are the daemon's to create.
    if let Some(db) = &database {
        if let Err(e) = db.client_config() {
            eprintln!("cssmtp submit: cannot use the spool database: {e}");
            return EXIT_FATAL;
        }
    } else if let Err(e) = layout.create_incoming() {
        eprintln!(
            "cssmtp submit: cannot use the spool directory {}: {e}",
            layout.incoming.display()
        );
        return EXIT_FATAL;
    }
    let mut job = JobInfo::from_environment();
    if let Some(name) = job_name {
        job.job_name = name;
    }
    if let Some(id) = job_id {
        job.job_id = id;
    }
    let stdin = [PathBuf::from("-")];
    let files = if files.is_empty() { &stdin[..] } else { files };
    let mut status = EXIT_OK;
    for (index, file) in files.iter().enumerate() {
        let label = file.display().to_string();
        let contents = if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map(|_| buf)
        } else {
            std::fs::read(file)
        };
        let contents = match contents {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cssmtp submit: cannot read {label}: {e}");
                status = EXIT_FATAL;
                continue;
            }
        };
        // A mainframe-format file is checked as the daemon will read it (Translate).
        // (Rules of a name carrying the page the producer chose, if any: never an error.)
        let rules = match translate {
            Some(page) => crate::spool::translate::Rules::for_file(
                &config,
                &format!(
                    "file.{}{}",
                    crate::spool::translate::FILE_PAGE_MARK,
                    page.name()
                ),
            )
            .unwrap_or_default(),
            None => crate::spool::translate::Rules::of(&config).map(|r| (r, false)),
        };
        let converted = match crate::spool::translate::converted_bytes(
            rules.map(|(r, _)| r),
            rules.is_some_and(|(_, always)| always),
            &contents,
        ) {
            Ok(converted) => converted,
            Err(e) => {
                eprintln!(
                    "cssmtp submit: {label} cannot be read as EBCDIC {}: {e}; not spooled",
                    rules.map_or("", |(r, _)| r.page.name())
                );
                if status == EXIT_OK {
                    status = EXIT_DATAERR;
                }
                continue;
            }
        };
        let (mails, summary) = cssmtp_batch::parse_bytes(
            converted.as_deref().unwrap_or(&contents),
            config.batch_limits(),
        );
        if config.options.blank_trnc == cssmtp_batch::BlankTrnc::Auto
            && mails.first().is_some_and(|m| m.data.padded)
        {
            // Said, so that nobody wonders where the blanks went (Options BlankTrnc).
            eprintln!(
                "{label}: every line has the same length (fixed-length records): the trailing blanks of the mail text are padding and are removed"
            );
        }
        for e in &summary.errors {
            eprintln!("{label}:{}: {e}", e.line);
        }
        if summary.errors_not_kept > 0 {
            eprintln!(
                "{label}: {} more error(s) not listed",
                summary.errors_not_kept
            );
        }
        // A refused RCPT TO only makes that recipient undeliverable (the daemon sends
        // the mail to the others and returns it for that one): listed, still spooled.
        // Any other error makes the daemon hold the file.
        let has_errors =
            summary.errors.iter().any(|e| !e.is_recipient_error()) || summary.errors_not_kept > 0;
        if has_errors && !force {
            // The daemon would only hold it: say so now and spool nothing.
            eprintln!(
                "cssmtp submit: {label} has syntax errors and was not spooled (--force spools it anyway)"
            );
            if status == EXIT_OK {
                status = EXIT_DATAERR;
            }
            continue;
        }
        if let Some(db) = &database {
            let code = submit_to_database(
                db,
                &config,
                (&job, translate),
                index,
                &label,
                mails.len(),
                &contents,
            )
            .await;
            if code != EXIT_OK {
                status = code;
            }
            continue;
        }
        match submit_translated(&layout.incoming, &job, index + 1, &contents, translate) {
            Ok(spooled) => {
                let _ = writeln!(
                    std::io::stdout(),
                    "{label}: {} mail(s) spooled as {}",
                    mails.len(),
                    spooled.display()
                );
            }
            Err(e) => {
                eprintln!(
                    "cssmtp submit: cannot write {label} into {}: {e}",
                    layout.incoming.display()
                );
                status = EXIT_FATAL;
            }
        }
    }
    status
}

/// `submit` into the shared spool (`SpoolDatabase`): once, however often it is retried.
async fn submit_to_database(
    db: &crate::storage::pg::DbSettings,
    config: &Config,
    (job, translate): (&JobInfo, Option<crate::spool::translate::FilePage>),
    index: usize,
    label: &str,
    mails: usize,
    contents: &[u8],
) -> u8 {
    use crate::storage::pg::submit::{Submitted, name_of, submit_named};
    let mut name = name_of(job, index + 1, contents);
    if let Some(page) = translate {
        name.push_str(&crate::spool::translate::file_name_mark(page));
    }
    match submit_named(db, &config.ext_wrt_name, &name, contents).await {
        Ok(Submitted::New(name)) => {
            let _ = writeln!(
                std::io::stdout(),
                "{label}: {mails} mail(s) spooled as {name} in the spool database"
            );
            EXIT_OK
        }
        Ok(Submitted::Already(name)) => {
            let _ = writeln!(
                std::io::stdout(),
                "{label}: already spooled as {name} in the spool database (the same job submitted the same file): nothing added"
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("cssmtp submit: cannot write {label} into the spool database: {e}");
            EXIT_FATAL
        }
    }
}

fn sink_tls(args: &SinkArgs) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let certs = crate::delivery::tls::read_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(crate::delivery::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Some(Arc::new(config)))
}

async fn sink(args: SinkArgs) -> u8 {
    let tls = match sink_tls(&args) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("cssmtp sink: {e:#}");
            return EXIT_FATAL;
        }
    };
    if let Some(dir) = &args.store
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("cssmtp sink: cannot create {}: {e}", dir.display());
        return EXIT_FATAL;
    }
    let options = SinkOptions {
        hostname: args.hostname,
        pipelining: !args.no_pipelining,
        ehlo: !args.no_ehlo,
        size: args.size,
        eight_bit_mime: !args.no_8bitmime,
        smtputf8: args.smtputf8,
        chunking: args.chunking,
        strict_8bit: args.strict_8bit,
        tls,
        strict_line_ends: args.strict_line_ends,
        lenient_end_of_data: args.lenient_end_of_data,
        store: args.store,
        print: true,
        keep: false,
        scripted: !args.accept_all,
        faults: args.faults,
        max_mails_per_session: args.max_mails_per_session,
        close_at_limit: args.close_at_limit,
        max_rcpts: args.max_rcpts,
        max_connections: args.max_connections,
        close_beyond_max: args.close_beyond_max,
        ..SinkOptions::default()
    };
    let sink = match Sink::bind(args.listen, options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cssmtp sink: cannot listen on {}: {e}", args.listen);
            return EXIT_FATAL;
        }
    };
    println!("sink: listening on {}", sink.addr);
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone());
    stop.cancelled().await;
    println!("sink: {} mail(s) received", sink.count());
    EXIT_OK
}
