//! The sendmail command line: the options programs really pass, read as sendmail reads
//! them (single letters, a value attached or in the next argument, `-o`/`-O` options,
//! `--` ending the options; anything after the options is a recipient).

use std::ffi::OsString;
use std::path::PathBuf;

/// What was asked for (`-b` mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `-bm` (the default): deliver a message read from standard input.
    Deliver,
    /// `-bp`, or invoked as `mailq`: list the queue.
    ListQueue,
    /// `-bi`, or invoked as `newaliases`: there are no aliases; nothing to do.
    Aliases,
}

/// How errors are reported (`-oe?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMode {
    /// `-oep` (and `-oee`, `-oew`): printed on standard error.
    Print,
    /// `-oem`: printed, and mailed back to the sender.
    Mail,
    /// `-oeq`: only the exit status tells.
    Quiet,
}

/// The options of one invocation.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// `-t`: the recipients are read from `To:`, `Cc:` and `Bcc:`.
    pub from_headers: bool,
    /// `-i`/`-oi`: a line holding a single "." does not end the message.
    pub ignore_dots: bool,
    /// `-f`/`-r`: the envelope sender.
    pub sender: Option<String>,
    /// `-F`: the sender's full name.
    pub full_name: Option<String>,
    pub errors: ErrorMode,
    /// `-v`: say where the mail was spooled.
    pub verbose: bool,
    /// `-C`: another configuration file (drops any privilege first).
    pub config: Option<PathBuf>,
    /// Recipients given as arguments (each may hold several, separated by commas).
    pub recipients: Vec<String>,
    /// Options accepted but without effect here, for one warning line.
    pub ignored: Vec<String>,
}

/// A command-line problem: sendmail's EX_USAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage(pub String);

/// Letters that take a value (attached, or the next argument).
const WITH_VALUE: &str = "ABCFLNORVXfhpqr";
/// Letters that stand alone, accepted without effect (sendmail's `-m` metoo, `-n` no
/// aliasing, `-U` initial submission, `-G` gateway, `-s` old flag, `-x`, `-c`).
const FLAGS_WITHOUT_EFFECT: &str = "mnUGsxc";

impl Options {
    /// Reads the arguments after the program name. `mode` is what the program was
    /// invoked as (`mailq` lists the queue).
    ///
    /// # Errors
    /// A [`Usage`] error, as sendmail exits with EX_USAGE.
    pub fn parse(args: &[OsString], mode: Mode) -> Result<Self, Usage> {
        let mut options = Self {
            mode,
            from_headers: false,
            ignore_dots: false,
            sender: None,
            full_name: None,
            errors: ErrorMode::Print,
            verbose: false,
            config: None,
            recipients: Vec::new(),
            ignored: Vec::new(),
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let Some(arg) = arg.to_str() else {
                return Err(Usage(format!(
                    "an argument is not valid UTF-8: {}",
                    crate::escape::os(arg)
                )));
            };
            if arg == "--" {
                break;
            }
            let Some(letters) = arg.strip_prefix('-').filter(|l| !l.is_empty()) else {
                // The first non-option argument: it and the rest are recipients.
                options.recipients.push(arg.to_owned());
                break;
            };
            options.letters(letters, &mut rest)?;
        }
        for arg in rest {
            let Some(arg) = arg.to_str() else {
                return Err(Usage(format!(
                    "a recipient is not valid UTF-8: {}",
                    crate::escape::os(arg)
                )));
            };
            options.recipients.push(arg.to_owned());
        }
        Ok(options)
    }

    /// One option argument (without its `-`), taking its value from `rest` when not
    /// attached.
    fn letters<'a>(
        &mut self,
        letters: &str,
        rest: &mut impl Iterator<Item = &'a OsString>,
    ) -> Result<(), Usage> {
        let mut chars = letters.chars();
        let Some(letter) = chars.next() else {
            return Ok(());
        };
        let attached = chars.as_str();
        if WITH_VALUE.contains(letter) || letter == 'o' || letter == 'b' || letter == 'd' {
            let value = if !attached.is_empty() {
                attached.to_owned()
            } else if letter == 'q' || letter == 'd' {
                // `-q` (run the queue now) and `-d` (debug) stand alone as well.
                String::new()
            } else {
                match rest.next().map(|v| v.to_str()) {
                    Some(Some(v)) => v.to_owned(),
                    Some(None) => {
                        return Err(Usage(format!("the value of -{letter} is not valid UTF-8")));
                    }
                    None => return Err(Usage(format!("option -{letter} requires a value"))),
                }
            };
            return self.valued(letter, value);
        }
        // Flags, possibly grouped (`-ti`).
        for flag in letters.chars() {
            match flag {
                't' => self.from_headers = true,
                'i' => self.ignore_dots = true,
                'v' => self.verbose = true,
                f if FLAGS_WITHOUT_EFFECT.contains(f) => {}
                other => {
                    return Err(Usage(format!("illegal option -- {}", other.escape_debug())));
                }
            }
        }
        Ok(())
    }

    fn valued(&mut self, letter: char, value: String) -> Result<(), Usage> {
        match letter {
            'f' | 'r' => self.sender = Some(value),
            'F' => self.full_name = Some(value),
            'C' => self.config = Some(PathBuf::from(value)),
            'b' => {
                self.mode = match value.as_str() {
                    "m" => Mode::Deliver,
                    "p" => Mode::ListQueue,
                    "i" => Mode::Aliases,
                    "s" => {
                        return Err(Usage(
                            "-bs (SMTP on standard input) is not supported: give the message on standard input with -t or with the recipients as arguments".into(),
                        ));
                    }
                    other => {
                        return Err(Usage(format!(
                            "-b{} is not supported (only -bm, -bp and -bi)",
                            other.escape_debug()
                        )));
                    }
                };
            }
            'o' => self.old_option(&value),
            'O' => self.long_option(&value),
            'q' => self.ignored.push(format!(
                "-q{value} (the cssmtp daemon sends the queue by itself)"
            )),
            'X' => self.ignored.push("-X (no traffic log is written)".into()),
            'N' => self.ignored.push("-N (no delivery status notifications are asked of the targets; undeliverable mail is returned)".into()),
            'R' | 'V' => self.ignored.push(format!("-{letter}")),
            // -B body type, -h hop count, -L log tag, -p protocol, -A, -d debug: no
            // effect here.
            _ => {}
        }
        Ok(())
    }

    /// `-oX…`: sendmail's one-letter configuration options.
    fn old_option(&mut self, value: &str) {
        match value {
            "i" => self.ignore_dots = true,
            "ep" | "ee" | "ew" => self.errors = ErrorMode::Print,
            "em" => self.errors = ErrorMode::Mail,
            "eq" => self.errors = ErrorMode::Quiet,
            // Delivery mode (-odi, -odb, -odq), -oQ, -oL, -om, -oe alone: no effect here.
            v if v.starts_with('d') || v.starts_with('Q') || v.starts_with('L') || v == "m" => {}
            other => self.ignored.push(format!("-o{other}")),
        }
    }

    /// `-O Name=value`: sendmail's long configuration options.
    fn long_option(&mut self, value: &str) {
        let (name, setting) = value.split_once('=').unwrap_or((value, "true"));
        let yes = !matches!(
            setting.to_ascii_lowercase().as_str(),
            "false" | "f" | "no" | "n" | "0"
        );
        match name.to_ascii_lowercase().as_str() {
            "ignoredots" => self.ignore_dots = yes,
            "errormode" => {
                self.errors = match setting.chars().next() {
                    Some('m') => ErrorMode::Mail,
                    Some('q') => ErrorMode::Quiet,
                    _ => ErrorMode::Print,
                };
            }
            "deliverymode" | "queuedirectory" | "loglevel" => {}
            _ => self.ignored.push(format!("-O{value}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, Usage> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        Options::parse(&args, Mode::Deliver)
    }

    #[test]
    fn the_usual_invocations() {
        let o = parse(&["-t", "-oi"]).unwrap();
        assert!(o.from_headers && o.ignore_dots && o.recipients.is_empty());
        let o = parse(&["-t", "-i", "-f", "web@h.example"]).unwrap();
        assert_eq!(o.sender.as_deref(), Some("web@h.example"));
        let o = parse(&["-i", "-FCronDaemon", "-B8BITMIME", "-oem", "root"]).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("CronDaemon"));
        assert_eq!(o.errors, ErrorMode::Mail);
        assert_eq!(o.recipients, ["root"]);
        let o = parse(&["-ti", "-rme@h.example", "--", "-x@y", "b@c"]).unwrap();
        assert!(o.from_headers && o.ignore_dots);
        assert_eq!(o.sender.as_deref(), Some("me@h.example"));
        assert_eq!(o.recipients, ["-x@y", "b@c"]);
        // After the first recipient everything is a recipient.
        let o = parse(&["a@b", "-t"]).unwrap();
        assert_eq!(o.recipients, ["a@b", "-t"]);
        assert!(!o.from_headers);
        assert_eq!(parse(&["-bp"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(parse(&["-bi"]).unwrap().mode, Mode::Aliases);
        let o = parse(&["-q", "-oXyz", "-OFoo=bar"]).unwrap();
        assert_eq!(o.ignored.len(), 3, "{:?}", o.ignored);
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["-bs"]).unwrap_err().0.contains("-bs"));
        assert!(parse(&["-bd"]).is_err());
        assert!(
            parse(&["-k"])
                .unwrap_err()
                .0
                .contains("illegal option -- k")
        );
        assert!(parse(&["-f"]).unwrap_err().0.contains("requires a value"));
    }
}
