//! Operator commands in CSSMTP's MODIFY syntax: `DISPLAY,TARGETS`, `D,TAR,ADDR=1.2.3.4`,
//! `SUSPEND,DELAY`… Words are separated by commas or blanks; keywords may be shortened
//! to their minimum abbreviation (the capitals in `Display,TARgets`); case does not
//! matter. Pure.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// A command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    DisplayConfig,
    DisplayIplist,
    DisplayLoglevel,
    /// `DISPLAY,SPOOLSTATUS[,SUMMARY | ,DETAIL[,ALL | ,TKID=n]]`.
    DisplaySpoolstatus {
        detail: bool,
        tkid: Option<u32>,
    },
    /// `DISPLAY,TARGETS[,ADDR=ip]`.
    DisplayTargets {
        addr: Option<IpAddr>,
    },
    /// `FLUSHRETRY,TKID=n`: that task's mails leave long retry now.
    FlushRetryTask {
        tkid: u32,
    },
    /// `FLUSHRETRY,AGE=days`: mail in extended retry for at least that long is returned
    /// now.
    FlushRetryAge {
        days: u32,
    },
    /// `LOGLEVEL,LEVEL=n`.
    LogLevel {
        level: u32,
    },
    Refresh,
    RefreshIplist,
    RefreshTargets,
    Resume,
    /// `SUSPEND[,IMMEDIATE | ,DELAY]` (IMMEDIATE by default).
    Suspend {
        immediate: bool,
    },
    /// `STOP`: stop as SIGTERM does (cssmtp's; on z/OS, `P procname`).
    Stop,
    /// `USEREXIT,LEVEL={NONE | VERSION1}`: the user exit off or on.
    UserExit {
        on: bool,
    },
}

/// Why a command was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCommand(pub String);

impl fmt::Display for BadCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The syntax, for error replies and `--help`.
pub const SYNTAX: &str = "\
DISPLAY,CONFIG | DISPLAY,IPLIST | DISPLAY,LOGLEVEL
DISPLAY,SPOOLSTATUS[,SUMMARY | ,DETAIL[,ALL | ,TKID=n]]
DISPLAY,TARGETS[,ADDR=ip]
FLUSHRETRY,{AGE=days | TKID=n}
LOGLEVEL,LEVEL=n
REFRESH | REFRESHIPLIST | REFRESHTARGETS
SUSPEND[,IMMEDIATE | ,DELAY] | RESUME | STOP
USEREXIT,LEVEL={NONE | VERSION1}";

/// A keyword and its minimum abbreviation.
struct Keyword(&'static str, usize);

const DISPLAY: Keyword = Keyword("DISPLAY", 1);
const CONFIG: Keyword = Keyword("CONFIG", 4);
const IPLIST: Keyword = Keyword("IPLIST", 2);
const LOGLEVEL: Keyword = Keyword("LOGLEVEL", 3);
const SPOOLSTATUS: Keyword = Keyword("SPOOLSTATUS", 2);
const SUMMARY: Keyword = Keyword("SUMMARY", 1);
const DETAIL: Keyword = Keyword("DETAIL", 1);
const ALL: Keyword = Keyword("ALL", 3);
const TARGETS: Keyword = Keyword("TARGETS", 3);
const FLUSHRETRY: Keyword = Keyword("FLUSHRETRY", 6);
const REFRESH: Keyword = Keyword("REFRESH", 7);
const REFRESHIPLIST: Keyword = Keyword("REFRESHIPLIST", 9);
const REFRESHTARGETS: Keyword = Keyword("REFRESHTARGETS", 8);
const RESUME: Keyword = Keyword("RESUME", 3);
const SUSPEND: Keyword = Keyword("SUSPEND", 3);
const IMMEDIATE: Keyword = Keyword("IMMEDIATE", 1);
const DELAY: Keyword = Keyword("DELAY", 1);
const STOP: Keyword = Keyword("STOP", 4);
const USEREXIT: Keyword = Keyword("USEREXIT", 4);

impl Keyword {
    /// True when `word` is this keyword, or an abbreviation of it at least the minimum
    /// long.
    fn is(&self, word: &str) -> bool {
        let word = word.to_ascii_uppercase();
        word.len() >= self.1 && self.0.starts_with(&word)
    }
}

/// A word: a keyword or `NAME=value`.
fn split_value(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (word, None),
    }
}

fn bad(text: impl Into<String>) -> BadCommand {
    BadCommand(text.into())
}

/// `NAME=value` with NAME exactly `name`.
fn value_of<'w>(word: &'w str, name: &str) -> Option<&'w str> {
    match split_value(word) {
        (n, Some(v)) if n.eq_ignore_ascii_case(name) => Some(v),
        _ => None,
    }
}

fn number(text: &str, what: &str, max: u32) -> Result<u32, BadCommand> {
    match text.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(bad(format!(
            "{what} must be a whole number from 0 to {max}, not {text:?}"
        ))),
    }
}

/// Parses a command.
///
/// # Errors
/// [`BadCommand`] with what is wrong.
pub fn parse(text: &str) -> Result<Command, BadCommand> {
    if text.chars().any(char::is_control) {
        return Err(bad("control characters in the command"));
    }
    let words: Vec<&str> = text
        .split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    let Some((&verb, rest)) = words.split_first() else {
        return Err(bad("no command"));
    };
    if DISPLAY.is(verb) {
        display(rest)
    } else if FLUSHRETRY.is(verb) {
        flush_retry(rest)
    } else if LOGLEVEL.is(verb) {
        log_level(rest)
    } else if REFRESHIPLIST.is(verb) {
        alone(rest, Command::RefreshIplist)
    } else if REFRESHTARGETS.is(verb) {
        alone(rest, Command::RefreshTargets)
    } else if REFRESH.is(verb) {
        alone(rest, Command::Refresh)
    } else if RESUME.is(verb) {
        alone(rest, Command::Resume)
    } else if SUSPEND.is(verb) {
        suspend(rest)
    } else if STOP.is(verb) {
        alone(rest, Command::Stop)
    } else if USEREXIT.is(verb) {
        user_exit(rest)
    } else {
        Err(bad(format!(
            "unknown command {verb:?}{}",
            did_you_mean(verb, VERBS)
        )))
    }
}

/// The commands' keywords, for "did you mean".
const VERBS: &[&Keyword] = &[
    &DISPLAY,
    &FLUSHRETRY,
    &LOGLEVEL,
    &REFRESH,
    &REFRESHIPLIST,
    &REFRESHTARGETS,
    &RESUME,
    &SUSPEND,
    &STOP,
    &USEREXIT,
];

/// ` (did you mean DISPLAY?)` when a keyword is close to `word` (a slip of the fingers,
/// not an abbreviation: those are taken as they are).
fn did_you_mean(word: &str, known: &[&Keyword]) -> String {
    let word = word.to_ascii_uppercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&word, k.0), k.0))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

/// `command`, when no word follows.
fn alone(rest: &[&str], command: Command) -> Result<Command, BadCommand> {
    match rest.first() {
        None => Ok(command),
        Some(w) => Err(bad(format!("unexpected {w:?} after the command"))),
    }
}

/// `DISPLAY,…`.
fn display(rest: &[&str]) -> Result<Command, BadCommand> {
    let Some((&what, rest)) = rest.split_first() else {
        return Err(bad(
            "DISPLAY needs what to display: CONFIG, IPLIST, LOGLEVEL, SPOOLSTATUS or TARGETS",
        ));
    };
    if CONFIG.is(what) {
        alone(rest, Command::DisplayConfig)
    } else if IPLIST.is(what) {
        alone(rest, Command::DisplayIplist)
    } else if LOGLEVEL.is(what) {
        alone(rest, Command::DisplayLoglevel)
    } else if SPOOLSTATUS.is(what) {
        display_spool(rest)
    } else if TARGETS.is(what) {
        display_targets(rest)
    } else {
        Err(bad(format!(
            "DISPLAY {what}: expected CONFIG, IPLIST, LOGLEVEL, SPOOLSTATUS or TARGETS{}",
            did_you_mean(what, &[&CONFIG, &IPLIST, &LOGLEVEL, &SPOOLSTATUS, &TARGETS])
        )))
    }
}

/// `DISPLAY,TARGETS[,ADDR=ip]`.
fn display_targets(rest: &[&str]) -> Result<Command, BadCommand> {
    match rest {
        [] => Ok(Command::DisplayTargets { addr: None }),
        [word] => {
            let addr = value_of(word, "ADDR")
                .ok_or_else(|| bad(format!("expected ADDR=ip, not {word:?}")))?;
            let addr = addr
                .parse()
                .map_err(|_| bad(format!("ADDR {addr:?} is not an IP address")))?;
            Ok(Command::DisplayTargets { addr: Some(addr) })
        }
        [_, w, ..] => Err(bad(format!("unexpected {w:?} after the command"))),
    }
}

/// `FLUSHRETRY,{AGE=days | TKID=n}`.
fn flush_retry(rest: &[&str]) -> Result<Command, BadCommand> {
    match rest {
        [word] => {
            if let Some(v) = value_of(word, "TKID") {
                Ok(Command::FlushRetryTask {
                    tkid: number(v, "TKID", u32::MAX)?,
                })
            } else if let Some(v) = value_of(word, "AGE") {
                Ok(Command::FlushRetryAge {
                    days: number(v, "AGE", 3650)?,
                })
            } else {
                Err(bad(format!(
                    "FLUSHRETRY needs AGE=days or TKID=n, not {word:?}"
                )))
            }
        }
        [] => Err(bad("FLUSHRETRY needs AGE=days or TKID=n")),
        [_, w, ..] => Err(bad(format!("unexpected {w:?} after the command"))),
    }
}

/// `LOGLEVEL,LEVEL=n`.
fn log_level(rest: &[&str]) -> Result<Command, BadCommand> {
    match rest {
        [word] => {
            let v = value_of(word, "LEVEL")
                .ok_or_else(|| bad(format!("LOGLEVEL needs LEVEL=n, not {word:?}")))?;
            Ok(Command::LogLevel {
                level: number(v, "LEVEL", 31)?,
            })
        }
        [] => Err(bad("LOGLEVEL needs LEVEL=n")),
        [_, w, ..] => Err(bad(format!("unexpected {w:?} after the command"))),
    }
}

/// `USEREXIT,LEVEL={NONE | VERSION1}`.
fn user_exit(rest: &[&str]) -> Result<Command, BadCommand> {
    let needs = "USEREXIT needs LEVEL=NONE or LEVEL=VERSION1";
    match rest {
        [word] => match value_of(word, "LEVEL")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("NONE") => Ok(Command::UserExit { on: false }),
            Some("VERSION1") => Ok(Command::UserExit { on: true }),
            Some(other) if other.starts_with("VERSION") => Err(bad(format!(
                "USEREXIT LEVEL={other}: cssmtp's exits are VERSION1 (CSSMTP's VERSION2 to VERSION4 are load modules of z/OS)"
            ))),
            _ => Err(bad(format!("{needs}, not {word:?}"))),
        },
        [] => Err(bad(needs)),
        [_, w, ..] => Err(bad(format!("unexpected {w:?} after the command"))),
    }
}

/// `SUSPEND[,IMMEDIATE | ,DELAY]`.
fn suspend(rest: &[&str]) -> Result<Command, BadCommand> {
    match rest {
        [] => Ok(Command::Suspend { immediate: true }),
        [w] if IMMEDIATE.is(w) => Ok(Command::Suspend { immediate: true }),
        [w] if DELAY.is(w) => Ok(Command::Suspend { immediate: false }),
        [w, ..] => Err(bad(format!("SUSPEND takes IMMEDIATE or DELAY, not {w:?}"))),
    }
}

/// `DISPLAY,SPOOLSTATUS[,SUMMARY | ,DETAIL[,ALL | ,TKID=n]]`.
fn display_spool(rest: &[&str]) -> Result<Command, BadCommand> {
    match rest {
        [] => Ok(Command::DisplaySpoolstatus {
            detail: false,
            tkid: None,
        }),
        [w] if SUMMARY.is(w) => Ok(Command::DisplaySpoolstatus {
            detail: false,
            tkid: None,
        }),
        [w, more @ ..] if DETAIL.is(w) => match more {
            [] => Ok(Command::DisplaySpoolstatus {
                detail: true,
                tkid: None,
            }),
            [a] if ALL.is(a) => Ok(Command::DisplaySpoolstatus {
                detail: true,
                tkid: None,
            }),
            [t] => {
                let v = value_of(t, "TKID")
                    .ok_or_else(|| bad(format!("DETAIL takes ALL or TKID=n, not {t:?}")))?;
                Ok(Command::DisplaySpoolstatus {
                    detail: true,
                    tkid: Some(number(v, "TKID", u32::MAX)?),
                })
            }
            [_, w, ..] => Err(bad(format!("unexpected {w:?} after the command"))),
        },
        [w, ..] => Err(bad(format!(
            "SPOOLSTATUS takes SUMMARY or DETAIL, not {w:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cssmtp_forms_and_abbreviations() {
        let t = |s: &str| parse(s).unwrap();
        assert_eq!(t("DISPLAY,TARGETS"), Command::DisplayTargets { addr: None });
        assert_eq!(t("d tar"), Command::DisplayTargets { addr: None });
        assert_eq!(
            t("D,TAR,ADDR=::1"),
            Command::DisplayTargets {
                addr: Some("::1".parse().unwrap())
            }
        );
        assert_eq!(t("Display,CONFig"), Command::DisplayConfig);
        assert_eq!(t("D,IP"), Command::DisplayIplist);
        assert_eq!(t("D,LOG"), Command::DisplayLoglevel);
        assert_eq!(
            t("D,SP"),
            Command::DisplaySpoolstatus {
                detail: false,
                tkid: None
            }
        );
        assert_eq!(
            t("D,SP,D,TKID=3"),
            Command::DisplaySpoolstatus {
                detail: true,
                tkid: Some(3)
            }
        );
        assert_eq!(
            t("DISPLAY SPOOLSTATUS DETAIL ALL"),
            Command::DisplaySpoolstatus {
                detail: true,
                tkid: None
            }
        );
        assert_eq!(t("FLUSHR,TKID=7"), Command::FlushRetryTask { tkid: 7 });
        assert_eq!(t("flushretry,age=3"), Command::FlushRetryAge { days: 3 });
        assert_eq!(t("LOG,LEVEL=15"), Command::LogLevel { level: 15 });
        assert_eq!(t("USER,LEVEL=NONE"), Command::UserExit { on: false });
        assert_eq!(t("userexit level=version1"), Command::UserExit { on: true });
        assert!(parse("USEREXIT,LEVEL=VERSION3").is_err());
        assert!(parse("USEREXIT").is_err());
        assert_eq!(t("REFRESH"), Command::Refresh);
        assert_eq!(t("REFRESHIP"), Command::RefreshIplist);
        assert_eq!(t("REFRESHT"), Command::RefreshTargets);
        assert_eq!(t("RES"), Command::Resume);
        assert_eq!(t("SUS"), Command::Suspend { immediate: true });
        assert_eq!(t("SUSPEND,DELAY"), Command::Suspend { immediate: false });
        assert_eq!(t("STOP"), Command::Stop);
    }

    #[test]
    fn mistakes_are_explained() {
        let e = |s: &str| parse(s).unwrap_err().0;
        assert!(e("").contains("no command"));
        assert!(
            e("REFRES").contains("unknown command"),
            "shorter than REFRESH"
        );
        assert!(
            e("D,TA").contains("expected CONFIG"),
            "TARgets needs three letters"
        );
        assert!(e("D,TAR,ADDR=nope").contains("not an IP address"));
        assert!(e("LOG,LEVEL=99").contains("0 to 31"));
        assert!(e("FLUSHRETRY").contains("AGE=days or TKID=n"));
        assert!(e("STOP NOW").contains("unexpected"));
        assert!(e("D\nTAR").contains("control characters"));
    }

    /// A slip of the fingers gets a hint, as an unknown statement does.
    #[test]
    fn a_near_miss_says_what_was_meant() {
        let e = |s: &str| parse(s).unwrap_err().0;
        assert!(
            e("dispaly tar").ends_with("(did you mean DISPLAY?)"),
            "{}",
            e("dispaly tar")
        );
        assert!(e("REFRES").ends_with("(did you mean REFRESH?)"));
        assert!(e("SUSPNED").ends_with("(did you mean SUSPEND?)"));
        assert!(e("D,TARGTES").ends_with("(did you mean TARGETS?)"));
        assert!(e("D,SPOOLSTAUTS").ends_with("(did you mean SPOOLSTATUS?)"));
        assert!(!e("BOGUS").contains("did you mean"), "nothing close");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,80}") {
            let _ = parse(&text);
        }
    }
}
