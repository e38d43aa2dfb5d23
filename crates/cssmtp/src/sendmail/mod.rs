//! The sendmail bridge: `cssmtp sendmail`, and the same program invoked as `sendmail`
//! (or `send-mail`), `mailq` or `newaliases` through a symbolic link, as programs on
//! Linux expect of `/usr/sbin/sendmail` (cron, PHP's `mail()`, `mail(1)`, scripts).
//!
//! It reads a message on standard input, adds `From:`, `Date:` and `Message-ID:` when
//! missing, and writes it as a batch-SMTP spool file for the configured writer, through
//! the same atomic path as `cssmtp submit` ([`crate::spool::submit`]).
//!
//! **Installed setgid to the spool's group** it may write into the writer directory for
//! callers who are not in that group. Then nothing the caller controls can move where it
//! writes: the configuration is the compiled-in default (the environment is not read;
//! `-C FILE` gives up the privilege first, as sendmail does), it never creates a
//! directory, it writes only a new file in the writer directory (`O_CREAT|O_EXCL`,
//! `O_NOFOLLOW`, umask 027), and every address is checked before it is written into a
//! command (no control character, no `<`/`>`, no leading `-`, a valid path), and the
//! whole file is read back by the batch parser before it is spooled. Every other
//! `cssmtp` command gives up the privilege at once (see `main.rs`).
//!
//! Exit status as sendmail's (`sysexits.h`).

pub mod args;
pub mod message;

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use args::{ErrorMode, Mode, Options, Usage};

pub const EX_OK: u8 = 0;
pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOUSER: u8 = 67;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_OSERR: u8 = 71;
pub const EX_CANTCREAT: u8 = 73;
pub const EX_IOERR: u8 = 74;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_NOPERM: u8 = 77;
pub const EX_CONFIG: u8 = 78;

/// The most recipients in one transaction (CSSMTP's limit); more go in further
/// transactions of the same spool file.
const RCPTS_PER_MAIL: usize = 2000;

/// A bridge invocation read from the program's arguments.
#[derive(Debug)]
pub struct Invocation {
    /// The name for messages: `sendmail`, `mailq`, `cssmtp sendmail`.
    pub name: String,
    pub mode: Mode,
    /// The arguments after the name.
    pub args: Vec<OsString>,
}

/// The bridge, when the program was invoked as one: by its name (`sendmail`,
/// `send-mail`, `mailq`, `newaliases`: the last part of `argv[0]`), or as
/// `cssmtp sendmail …`.
pub fn invocation(argv: &[OsString]) -> Option<Invocation> {
    let program = argv.first()?;
    let base = Path::new(program).file_name()?.to_str()?;
    // The names the Debian package installs beside an MTA's (`sendmail-cssmtp`,
    // `mailq-cssmtp`), and `cssmtp-sendmail` as an install names a setgid copy.
    let base = base
        .strip_suffix("-cssmtp")
        .or_else(|| base.strip_prefix("cssmtp-"))
        .filter(|b| matches!(*b, "sendmail" | "mailq" | "newaliases"))
        .unwrap_or(base);
    let rest = || argv.get(1..).unwrap_or_default().to_vec();
    let (name, mode, args) = match base {
        "sendmail" | "send-mail" => (base, Mode::Deliver, rest()),
        "mailq" => (base, Mode::ListQueue, rest()),
        "newaliases" => (base, Mode::Aliases, rest()),
        _ if argv.get(1).is_some_and(|a| a == "sendmail") => (
            "cssmtp sendmail",
            Mode::Deliver,
            argv.get(2..).unwrap_or_default().to_vec(),
        ),
        _ => return None,
    };
    Some(Invocation {
        name: name.to_owned(),
        mode,
        args,
    })
}

/// Whether the process runs with a user or group other than the caller's (setgid or
/// setuid).
pub fn privileged() -> bool {
    nix::unistd::getegid() != nix::unistd::getgid()
        || nix::unistd::geteuid() != nix::unistd::getuid()
}

/// Gives up a setgid/setuid privilege for good (real, effective and saved IDs).
///
/// # Errors
/// The system refused (then the caller must not go on).
pub fn drop_privileges() -> nix::Result<()> {
    use nix::unistd::{getgid, getuid, setresgid, setresuid};
    if !privileged() {
        return Ok(());
    }
    let (gid, uid) = (getgid(), getuid());
    setresgid(gid, gid, gid)?;
    setresuid(uid, uid, uid)?;
    if privileged() {
        return Err(nix::errno::Errno::EPERM);
    }
    Ok(())
}

/// Where the bridge prints: standard error, unless `-oeq`.
struct Out<'a> {
    name: &'a str,
    quiet: bool,
}

impl Out<'_> {
    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{}: {line}", self.name);
        }
    }
}

/// Runs the bridge; returns the exit status.
pub fn main(invocation: Invocation) -> u8 {
    // Files are created for the spool's group, whatever umask the caller set.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    let name = invocation.name.as_str();
    let options = match Options::parse(&invocation.args, invocation.mode) {
        Ok(o) => o,
        Err(Usage(text)) => {
            eprintln!("{name}: CSM4001E {text}");
            eprintln!(
                "usage: {name} [-t] [-i] [-f sender] [-F full-name] [-oem|-oep|-oeq] [-bm|-bp] [--] [recipient ...]"
            );
            return EX_USAGE;
        }
    };
    let out = Out {
        name,
        quiet: options.errors == ErrorMode::Quiet,
    };
    // Only delivering needs the spool's group, and only with the compiled-in
    // configuration.
    if (options.config.is_some() || options.mode != Mode::Deliver)
        && let Err(e) = drop_privileges()
    {
        out.say(&format!("CSM4002E cannot give up the privileges: {e}"));
        return EX_OSERR;
    }
    let config_path = options
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::cli::DEFAULT_CONFIG));
    let config = match crate::config::load(&config_path) {
        Ok((config, _warnings)) => config,
        Err(crate::config::LoadError::Invalid { diagnostics, .. }) => {
            for d in diagnostics
                .iter()
                .filter(|d| d.severity == crate::config::Severity::Error)
            {
                out.say(&format!("CSM4003E {d}"));
            }
            return EX_CONFIG;
        }
        Err(e) => {
            out.say(&format!("CSM4003E {e}"));
            return EX_CONFIG;
        }
    };
    match options.mode {
        Mode::Aliases => {
            out.say("CSM4004I cssmtp has no aliases: nothing to do");
            EX_OK
        }
        Mode::ListQueue => list_queue(&out, &config),
        Mode::Deliver => deliver(&out, &options, &config),
    }
}

/// `-bp`/`mailq`: the spool files the daemon is working on, from its DISPLAY,SPOOLSTATUS.
fn list_queue(out: &Out<'_>, config: &crate::config::Config) -> u8 {
    let socket = config.control_socket();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.say(&format!("CSM4005E cannot list the queue: {e}"));
            return EX_OSERR;
        }
    };
    match runtime.block_on(crate::control::request(
        &socket,
        "DISPLAY,SPOOLSTATUS,DETAIL",
    )) {
        Ok(reply) => {
            for line in &reply.lines {
                println!("{line}");
            }
            if reply.ok { EX_OK } else { EX_UNAVAILABLE }
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            out.say(&format!(
                "CSM4005E only the cssmtp administrator may list the queue ({}: {e})",
                socket.display()
            ));
            EX_NOPERM
        }
        Err(e) => {
            out.say(&format!(
                "CSM4005E cannot reach the cssmtp daemon at {}: {e}",
                socket.display()
            ));
            EX_UNAVAILABLE
        }
    }
}

/// The caller: login name and full name (the first part of the GECOS field).
fn caller() -> (String, Option<String>) {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => {
            let gecos = user.gecos.to_string_lossy().into_owned();
            let full = gecos
                .split(',')
                .next()
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned);
            (user.name, full)
        }
        _ => (format!("uid{uid}"), None),
    }
}

/// Reads standard input, at most `limit` bytes (`None` when it holds more).
fn read_stdin(limit: Option<u64>) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    match limit {
        Some(limit) => {
            std::io::stdin()
                .lock()
                .take(limit.saturating_add(1))
                .read_to_end(&mut buf)?;
            if u64::try_from(buf.len()).unwrap_or(u64::MAX) > limit {
                return Ok(None);
            }
        }
        None => {
            std::io::stdin().lock().read_to_end(&mut buf)?;
        }
    }
    Ok(Some(buf))
}

/// Problems with the message or its addresses, for the caller (and, with `-oem`, the
/// sender).
struct Refusal {
    status: u8,
    lines: Vec<String>,
}

fn deliver(out: &Out<'_>, options: &Options, config: &crate::config::Config) -> u8 {
    for ignored in &options.ignored {
        out.say(&format!("CSM4006W option {ignored} is ignored"));
    }
    let host = config
        .host_name
        .clone()
        .unwrap_or_else(crate::app::system_host_name);
    let (login, gecos) = caller();
    let job_id = format!("J{:07}", std::process::id() % 10_000_000);
    // Job name and ID as the spool file name carries them (cleaned).
    let job = crate::spool::name::JobIdentity::from_file_name(
        &crate::spool::name::spool_file_name(&login, &job_id, "x"),
    );
    let limit = (config.jes_msg_size > 0).then(|| config.jes_msg_size.saturating_mul(1000));
    let input = match read_stdin(limit) {
        Ok(Some(input)) => input,
        Ok(None) => {
            out.say(&format!(
                "CSM4007E the message is larger than JESMsgSize {} (thousands of bytes): not sent",
                config.jes_msg_size
            ));
            return EX_DATAERR;
        }
        Err(e) => {
            out.say(&format!("CSM4008E cannot read the message: {e}"));
            return EX_IOERR;
        }
    };
    // The sender: -f/-r, else the caller at this host.
    let sender = match options.sender.as_deref().map(str::trim) {
        Some("" | "<>") => String::new(),
        Some(given) => match message::mailbox(given, &host, "MAIL FROM") {
            Ok(s) => s,
            Err(bad) => {
                out.say(&format!(
                    "CSM4009E sender \"{}\" refused: {}",
                    bad.address, bad.why
                ));
                return EX_USAGE;
            }
        },
        None => message::mailbox(&login, &host, "MAIL FROM")
            .unwrap_or_else(|_| format!("{}@{host}", job.job_name.to_ascii_lowercase())),
    };
    let built = build(
        options,
        &input,
        &host,
        &sender,
        gecos.as_deref(),
        &job,
        config,
    );
    let batch = match built {
        Ok(batch) => batch,
        Err(refusal) => {
            for line in &refusal.lines {
                out.say(line);
            }
            if options.errors == ErrorMode::Mail && !sender.is_empty() {
                mail_back(out, config, &host, &sender, &job, &refusal.lines, &input);
            }
            return refusal.status;
        }
    };
    let layout = crate::spool::SpoolLayout::new(config.writer_spool());
    if !std::fs::symlink_metadata(&layout.incoming).is_ok_and(|m| m.is_dir()) {
        out.say(&format!(
            "CSM4010E the spool directory {} does not exist (cssmtp creates it when it starts): mail not sent",
            crate::escape::path(&layout.incoming)
        ));
        return EX_UNAVAILABLE;
    }
    let info = crate::spool::submit::JobInfo {
        job_name: job.job_name.clone(),
        job_id: job.job_id.clone(),
    };
    match crate::spool::submit::submit(&layout.incoming, &info, 1, &batch) {
        Ok(path) => {
            if options.verbose {
                out.say(&format!(
                    "CSM4011I mail from <{sender}> spooled as {}",
                    crate::escape::path(&path)
                ));
            }
            EX_OK
        }
        Err(e) => {
            out.say(&format!(
                "CSM4012E cannot write the mail into {}: {e}: mail not sent",
                crate::escape::path(&layout.incoming)
            ));
            write_error_status(&e)
        }
    }
}

/// The exit status for a spool file that could not be written: EX_CANTCREAT when not
/// allowed, EX_TEMPFAIL when it may work later (a full disk), else EX_IOERR.
fn write_error_status(e: &std::io::Error) -> u8 {
    use nix::libc::{EACCES, EDQUOT, ENOSPC, EPERM, EROFS};
    match e.raw_os_error() {
        Some(EACCES | EPERM | EROFS) => EX_CANTCREAT,
        Some(ENOSPC | EDQUOT) => EX_TEMPFAIL,
        _ if e.kind() == std::io::ErrorKind::PermissionDenied => EX_CANTCREAT,
        _ => EX_TEMPFAIL,
    }
}

/// The batch-SMTP spool file for the message, or why it is refused.
fn build(
    options: &Options,
    input: &[u8],
    host: &str,
    sender: &str,
    gecos: Option<&str>,
    job: &crate::spool::name::JobIdentity,
    config: &crate::config::Config,
) -> Result<Vec<u8>, Refusal> {
    let mut parsed = message::parse(input, options.ignore_dots).map_err(|bad| Refusal {
        status: EX_DATAERR,
        lines: vec![format!("CSM4013E the message is refused: {}", bad.0)],
    })?;
    let mut wanted: Vec<String> = options
        .recipients
        .iter()
        .flat_map(|arg| {
            let list = message::address_list(arg);
            // An argument with a control character, or that is no address list at
            // all, is checked whole (and refused): a line break must never be read
            // around.
            if arg.chars().any(char::is_control) || (list.is_empty() && !arg.trim().is_empty()) {
                vec![arg.clone()]
            } else {
                list
            }
        })
        .collect();
    if options.from_headers {
        wanted.extend(parsed.recipients());
    }
    let mut recipients: Vec<String> = Vec::new();
    let mut refused = Vec::new();
    for raw in &wanted {
        match message::mailbox(raw, host, "RCPT TO") {
            Ok(r) if !recipients.contains(&r) => recipients.push(r),
            Ok(_) => {}
            Err(bad) => refused.push(format!(
                "CSM4014E recipient \"{}\" refused: {}",
                bad.address, bad.why
            )),
        }
    }
    if !refused.is_empty() {
        refused.push("CSM4015E mail not sent".into());
        return Err(Refusal {
            status: EX_NOUSER,
            lines: refused,
        });
    }
    if recipients.is_empty() {
        return Err(Refusal {
            status: EX_USAGE,
            lines: vec![if options.from_headers {
                "CSM4016E no recipient addresses found in the header (To:, Cc:, Bcc:) nor given: mail not sent".into()
            } else {
                "CSM4016E no recipients given (name them, or use -t to take them from To:, Cc: and Bcc:): mail not sent".into()
            }],
        });
    }
    parsed.drop_bcc();
    let full_name = options.full_name.as_deref().or(gecos);
    let text = message::text(
        &parsed,
        &message::Sender {
            address: sender,
            full_name,
            job_name: &job.job_name,
            job_id: &job.job_id,
            host,
            user_info: config.header.user_info,
        },
        chrono::Local::now(),
    );
    let batch = batch_file(host, config.sendmail_starttls, sender, &recipients, &text);
    // What the daemon will read, read now: a message it would refuse is not spooled.
    let (_, summary) = cssmtp_batch::parse_bytes(&batch, config.batch_limits());
    if !summary.errors.is_empty() || summary.errors_not_kept > 0 {
        let mut lines: Vec<String> = summary
            .errors
            .iter()
            .map(|e| format!("CSM4013E the message is refused: {e}"))
            .collect();
        lines.push("CSM4015E mail not sent".into());
        return Err(Refusal {
            status: EX_DATAERR,
            lines,
        });
    }
    Ok(batch)
}

/// One spool file: the message to the recipients, in transactions of at most
/// [`RCPTS_PER_MAIL`], each after `STARTTLS` when `starttls` (`SendmailStartTls Yes`).
fn batch_file(
    host: &str,
    starttls: bool,
    sender: &str,
    recipients: &[String],
    text: &[u8],
) -> Vec<u8> {
    let mut batch = Vec::with_capacity(text.len() + 64 * recipients.len() + 64);
    for chunk in recipients.chunks(RCPTS_PER_MAIL) {
        cssmtp_batch::write::transaction_head(&mut batch, host, starttls, sender, chunk);
        batch.extend_from_slice(text);
        batch.extend_from_slice(b".\r\n");
    }
    batch.extend_from_slice(b"QUIT\r\n");
    batch
}

/// `-oem`: the refusal mailed back to the sender (from `<>`), with the header of the
/// message; best effort (said when it fails).
fn mail_back(
    out: &Out<'_>,
    config: &crate::config::Config,
    host: &str,
    sender: &str,
    job: &crate::spool::name::JobIdentity,
    lines: &[String],
    input: &[u8],
) {
    let mut body = String::from("Your message was not sent: sendmail (cssmtp) refused it.\n\n");
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    body.push_str("\nThe header of the message:\n\n");
    if let Ok(parsed) = message::parse(input, true) {
        for field in parsed.fields.iter().take(100) {
            for part in field.split("\r\n") {
                body.push_str("  ");
                body.push_str(&part.chars().take(900).collect::<String>());
                body.push('\n');
            }
        }
    }
    let notice = format!(
        "To: <{sender}>\nSubject: Returned mail: not sent\nAuto-Submitted: auto-replied\n\n{body}"
    );
    let Ok(parsed) = message::parse(notice.as_bytes(), true) else {
        return;
    };
    let text = message::text(
        &parsed,
        &message::Sender {
            address: "",
            full_name: Some("Mail Delivery Subsystem"),
            job_name: &job.job_name,
            job_id: &job.job_id,
            host,
            user_info: config.header.user_info,
        },
        chrono::Local::now(),
    );
    let batch = batch_file(
        host,
        config.sendmail_starttls,
        "",
        &[sender.to_owned()],
        &text,
    );
    let layout = crate::spool::SpoolLayout::new(config.writer_spool());
    let info = crate::spool::submit::JobInfo {
        job_name: job.job_name.clone(),
        job_id: job.job_id.clone(),
    };
    let (_, summary) = cssmtp_batch::parse_bytes(&batch, config.batch_limits());
    let result = if summary.errors.is_empty() {
        crate::spool::submit::submit(&layout.incoming, &info, 1, &batch).map(|_| ())
    } else {
        Err(std::io::Error::other("the notice itself was refused"))
    };
    match result {
        Ok(()) => out.say(&format!("CSM4017I the refusal was mailed to <{sender}>")),
        Err(e) => out.say(&format!(
            "CSM4018W the refusal could not be mailed to <{sender}>: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{Mode, invocation};
    use std::ffi::OsString;

    fn mode(argv0: &str) -> Option<Mode> {
        invocation(&[OsString::from(argv0), OsString::from("-t")]).map(|i| i.mode)
    }

    /// The names the package installs beside another MTA's are the bridge too.
    #[test]
    fn names_of_the_bridge() {
        assert_eq!(mode("/usr/sbin/sendmail"), Some(Mode::Deliver));
        assert_eq!(mode("/usr/sbin/sendmail-cssmtp"), Some(Mode::Deliver));
        assert_eq!(mode("/usr/sbin/cssmtp-sendmail"), Some(Mode::Deliver));
        assert_eq!(mode("mailq-cssmtp"), Some(Mode::ListQueue));
        assert_eq!(mode("/usr/bin/mailq"), Some(Mode::ListQueue));
        assert_eq!(mode("/usr/bin/cssmtp"), None);
        assert_eq!(mode("trace-cssmtp"), None);
        assert_eq!(mode("cssmtp-cssmtp"), None);
    }
}
