//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod exit;
pub mod manual;
pub mod version;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/cssmtp/cssmtp.conf";

#[derive(Debug, Parser)]
#[command(
    name = "cssmtp",
    version,
    long_version = version::long(),
    about = "Forward batch-SMTP mail from a spool to target SMTP servers (a Linux CSSMTP)",
    long_about = "cssmtp reads the batch-SMTP files that jobs write into its spool \
(<SpoolDirectory>/<ExtWrtName>/) and forwards every mail to the configured target servers, \
as z/OS Communications Server CSSMTP does. The configuration file uses CSSMTP's statements.",
    after_help = exit::help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Forward the mail in the spool (in the foreground, until SIGTERM/SIGINT).
    Run {
        /// Configuration file.
        #[arg(short, long, env = "CSSMTP_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Process what is in the spool, then exit; the exit status tells whether all
        /// mail was delivered.
        #[arg(long)]
        drain: bool,
        /// Cold start: discard the checkpoint journal, so that spool files left part
        /// done by an earlier run are sent again in full (CSSMTP's -f).
        #[arg(short = 'f', long = "cold")]
        cold: bool,
    },
    /// Give the running daemon an operator command (CSSMTP's MODIFY) and print its reply.
    #[command(after_help = concat!(
        "Commands (words separated by commas or blanks; capitals are the shortest abbreviation):\n",
        "  Display,CONFig | Display,IPlist | Display,LOGlevel\n",
        "  Display,SPoolstatus[,Summary | ,Detail[,ALL | ,TKID=n]]\n",
        "  Display,TARgets[,ADDR=ip]\n",
        "  FLUSHRetry,{AGE=days | TKID=n}\n",
        "  LOGlevel,LEVEL=n          (1 error, 2 warning, 4 event, 8 detail, 16 trace)\n",
        "  REFRESH | REFRESHIPlist | REFRESHTargets\n",
        "  SUSpend[,Immediate | ,Delay] | RESume | STOP\n",
        "  USERexit,LEVEL={NONE | VERSION1}\n\n",
        "Examples:\n",
        "  cssmtp modify -c /etc/cssmtp/cssmtp.conf DISPLAY,TARGETS\n",
        "  cssmtp modify d sp detail\n",
        "  cssmtp modify --json d tar\n\n",
        "Exit status: 0 the command was carried out; 1 it was refused or failed;\n",
        "  2 cssmtp cannot parse the command; 69 the daemon cannot be reached (not running,\n",
        "  or another RunDirectory); 78 the configuration file cannot be read."
    ))]
    Modify {
        /// Configuration file (for the control socket: <RunDirectory>/<ExtWrtName>.sock).
        #[arg(short, long, env = "CSSMTP_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the reply as JSON.
        #[arg(long)]
        json: bool,
        /// The command, e.g. DISPLAY,TARGETS or "d tar" (options may come before or
        /// after its words).
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Where is my mail? Finds mail by job name, job ID, spool file, Message-ID,
    /// sender, recipient or owner in the accounting records (SMF119 MAIL) and among the
    /// running daemon's spool tasks, and prints each mail's life: spool file, when taken,
    /// each try with its target and reply, and the outcome.
    #[command(after_help = concat!(
        "Examples:\n",
        "  cssmtp trace PAYROLL                      # a job name (or job ID, spool file, owner)\n",
        "  cssmtp trace '<PAYROLL.J0012345.1.x@host>' # a Message-ID (with or without <>)\n",
        "  cssmtp trace alice@example.com --json     # a sender or recipient\n\n",
        "Values are matched whole, in any case. Exit status: 0 mail was found; 4 none;\n",
        "  78 the configuration file cannot be read; 1 the trace records cannot be read."
    ))]
    Trace {
        /// Configuration file (for AccountingFile, ExtWrtName and RunDirectory).
        #[arg(short, long, env = "CSSMTP_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        /// Only records from this day on (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DAY")]
        since: Option<String>,
        /// Most mails shown (the most recent).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Read the trace records in this directory instead of the configuration's
        /// (`trace/` beside the AccountingFile); the daemon is not asked.
        #[arg(long, value_name = "DIR")]
        trace_dir: Option<PathBuf>,
        /// First index the past days that have no index yet (the daemon indexes each day
        /// when it is over, and at start; for records copied from elsewhere).
        #[arg(long)]
        index: bool,
        /// What to look for: a job name, job ID, spool file name, Message-ID, sender or
        /// recipient address, or the owning user.
        value: String,
    },
    /// Check a configuration file and print every problem with its line.
    Check {
        /// Configuration file.
        #[arg(short, long, env = "CSSMTP_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Put batch-SMTP files into the spool (atomically); reads standard input when no
    /// file (or "-") is given.
    Submit {
        /// Configuration file (for the spool directory and writer name).
        #[arg(short, long, env = "CSSMTP_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Job name recorded with the mail [default: $CSSMTP_JOBNAME, else your login].
        #[arg(long)]
        job_name: Option<String>,
        /// Job ID recorded with the mail [default: $CSSMTP_JOBID, else J<pid>].
        #[arg(long)]
        job_id: Option<String>,
        /// Spool a file even when it has syntax errors (cssmtp will deliver what it can
        /// and hold the file with its report). Without it such a file is listed, not
        /// spooled, and submit exits 65.
        #[arg(long)]
        force: bool,
        /// The code page of these files, when it is not the writer's `Translate`: an
        /// EBCDIC code page (IBM-1047, IBM-037, IBM-500, IBM-1140) or `none` (UTF-8/ASCII).
        /// Recorded in the spool file's name (`.translate=IBM-037`).
        #[arg(long, value_name = "CODEPAGE", value_parser = parse_translate)]
        translate: Option<crate::spool::translate::FilePage>,
        /// Batch-SMTP files ("-" for standard input).
        files: Vec<PathBuf>,
    },
    /// The sendmail bridge: a message on standard input into the spool, as
    /// /usr/sbin/sendmail does (also when invoked as `sendmail` or `mailq` through a
    /// symbolic link). See README, "Mail from Linux programs: the sendmail bridge".
    #[command(disable_help_flag = true)]
    Sendmail {
        /// sendmail's options and the recipients (-t, -i, -f sender, -F name, -oem, -bp…).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run a receiving SMTP server that keeps what it receives (for trying setups out).
    #[command(after_help = SINK_HELP)]
    Sink(SinkArgs),
    /// Show cssmtp at work: a loopback target server, sample jobs, forwarded, results.
    Demo {
        /// Keep the demo's files (configuration, spool, held files) in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Write the manual pages, cssmtp(8) and cssmtp.conf(5), generated from this
    /// command line and the statement table (for packagers).
    #[command(hide = true)]
    Manpage {
        /// Directory to write man8/cssmtp.8 and man5/cssmtp.conf.5 into (e.g.
        /// /usr/local/share/man).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `cssmtp sink --help`: the behaviour scripted by local part, and `--faults`.
const SINK_HELP: &str = "\
Scripted behaviour (unless --accept-all), chosen by the start of the recipient's local
part:
  tempfail-once            RCPT TO answered 451 4.2.1 the first time, accepted after
  tempfail2 ... tempfail9  the same for the first 2 ... 9 times
  tempfail                 RCPT TO answered 451 4.2.1, always
  reject, permfail, unknown
                           RCPT TO answered 550 5.1.1
  data-tempfail            the mail's final \".\" answered 451 4.3.0
  data-reject              the mail's final \".\" answered 554 5.6.0
  drop-at-rcpt             the connection is closed at that RCPT TO
  drop-in-data             the connection is closed after the text, before the reply
  early-250                a 250 is sent with the 354 to DATA, before the text; the final
                           \".\" is then refused with 554 5.6.0
  early-250-once           the same the first time only
  extra-reply              the mail is accepted, then an unsolicited 554 5.7.0 follows
  extra-reply-once         the same the first time only
  close-at-data            DATA answered 421 4.7.0, then the connection is closed
  close-after-dot          the final \".\" answered 421 4.7.0 (the mail discarded), then
                           the connection is closed
  close-at-data-once, close-after-dot-once
                           the same the first time only
A sender (MAIL FROM) whose local part starts with \"reject\" is refused with 550.
Any other address is accepted.

--faults injects faults at random, for soak tests: comma-separated NAME=RATE (per
thousand): greeting-421, temp-fail, perm-fail, drop-before-dot, drop-after-dot,
tls-fail, delay=RATE:MAX_MS, and seed=N. Example:
  cssmtp sink --faults temp-fail=50,drop-after-dot=5,delay=100:2000,seed=7";

#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: SocketAddr,
    /// Store each mail as <DIR>/<n>.eml.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Advertise and enforce SIZE.
    #[arg(long, value_name = "BYTES")]
    pub size: Option<u64>,
    /// Do not offer 8BITMIME (and refuse BODY=8BITMIME).
    #[arg(long = "no-8bitmime")]
    pub no_8bitmime: bool,
    /// Offer SMTPUTF8 (RFC 6531): UTF-8 addresses with MAIL FROM ... SMTPUTF8.
    #[arg(long)]
    pub smtputf8: bool,
    /// Offer CHUNKING (RFC 3030) and take the text in BDAT chunks.
    #[arg(long)]
    pub chunking: bool,
    /// Refuse 8-bit text (a byte of 0x80 or more) sent without BODY=8BITMIME.
    #[arg(long = "strict-8bit")]
    pub strict_8bit: bool,
    /// Offer STARTTLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Private key for --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Do not offer PIPELINING.
    #[arg(long)]
    pub no_pipelining: bool,
    /// Refuse EHLO (a plain SMTP server).
    #[arg(long)]
    pub no_ehlo: bool,
    /// Refuse mail text holding a bare CR or LF.
    #[arg(long, conflicts_with = "lenient_end_of_data")]
    pub strict_line_ends: bool,
    /// Also end mail text at <LF>.<LF> and the like (behave like a server open to SMTP
    /// smuggling, for tests).
    #[arg(long)]
    pub lenient_end_of_data: bool,
    /// Name in the greeting and EHLO reply.
    #[arg(long, default_value = "sink.localhost")]
    pub hostname: String,
    /// Accept every sender and recipient (no behaviour scripted by local part).
    #[arg(long)]
    pub accept_all: bool,
    /// Inject faults at random, for soak tests: comma-separated NAME=RATE (per
    /// thousand) of greeting-421, temp-fail, perm-fail, drop-before-dot,
    /// drop-after-dot, tls-fail, delay=RATE:MAX_MS, and seed=N.
    #[arg(long, value_name = "SPEC", value_parser = crate::sink::Faults::parse)]
    pub faults: Option<crate::sink::Faults>,
    /// Accept at most N mails per session: the next MAIL FROM is answered "452 4.5.3 Too
    /// many messages in this session".
    #[arg(long, value_name = "N")]
    pub max_mails_per_session: Option<u32>,
    /// With --max-mails-per-session: answer "421 4.7.0 ... closing" and close the
    /// connection instead (as Exim does).
    #[arg(long, requires = "max_mails_per_session")]
    pub close_at_limit: bool,
    /// Accept at most N recipients per transaction: RCPT TO beyond is answered "452 4.5.3
    /// Too many recipients".
    #[arg(long, value_name = "N")]
    pub max_rcpts: Option<u32>,
    /// Serve at most N sessions at once: a connection beyond is greeted "421 4.7.0 Too
    /// many concurrent connections, closing" and closed.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,
    /// With --max-connections: close a connection beyond at once, without a greeting.
    #[arg(long, requires = "max_connections")]
    pub close_beyond_max: bool,
}

/// `--translate`: a code page cssmtp supports, or `none`; anything else is refused.
fn parse_translate(value: &str) -> Result<crate::spool::translate::FilePage, String> {
    crate::spool::translate::FilePage::parse(value).ok_or_else(|| {
        format!("{value:?} is no code page cssmtp supports: IBM-1047, IBM-037, IBM-500, IBM-1140 or none")
    })
}
