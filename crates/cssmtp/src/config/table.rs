//! The shape of the statement table: what cssmtp knows about one statement, declared
//! once. The table itself is [`super::statements::STATEMENTS`] (and the parameter tables
//! of the block statements beside it); the validator ([`super::validate`]), DISPLAY
//! CONFIG and the REFRESH merge ([`super::running`]) and the README check all walk it.
//!
//! A static table of descriptors rather than a macro that also generates [`Config`]:
//! `Config` and its value types are used all over the daemon under their present
//! names, and CSSMTP's statements do not map one to one onto fields (a `TargetServer`
//! block makes several targets, `ExtendedRetry Interval 0` switches a feature off,
//! `ChkPointSync Mail` is a flag). Each descriptor names the field through small
//! non-capturing closures, which the compiler checks like any other code, and the table
//! stays plain data a reader can scan.

use std::path::PathBuf;

use super::Config;
use super::draft::{Diags, Draft, TargetDraft};
use super::syntax::Word;

/// One statement of the configuration file.
pub(crate) struct Def {
    /// Its documented spelling (matched without regard to case).
    pub name: &'static str,
    /// What follows the keyword.
    pub form: Form,
    /// Whether it may be given several times (each adds); otherwise a later one wins,
    /// with a warning.
    pub repeatable: bool,
    /// The value when the statement is absent, in the file's own syntax (read through
    /// the same parser, so it obeys the same range). None: the field's empty value
    /// (no path, no address, the system's name…).
    pub default: Option<&'static str>,
    /// Whether REFRESH can change it.
    pub refresh: Refresh,
    /// How DISPLAY CONFIG shows it.
    pub show: Show,
}

/// What follows a statement's keyword.
pub(crate) enum Form {
    /// `Keyword value`.
    Value(Kind<Draft>),
    /// `Keyword { Param value … }`, into the configuration.
    Block(&'static Block<Draft, Config>),
    /// `TargetServer { … }`: each statement makes targets of its own.
    Targets(&'static Block<TargetDraft, super::TargetSpec>),
    /// A CSSMTP statement cssmtp recognises and does not implement yet.
    NotYet,
}

/// The type of a value, its range, and where it goes in `S`.
pub(crate) enum Kind<S: 'static> {
    /// A whole number from `min` to `max`; `unit` is named in the error.
    Number {
        min: u64,
        max: u64,
        unit: &'static str,
        set: fn(&mut S, u64),
    },
    /// `Yes` or `No`.
    YesNo(fn(&mut S, bool)),
    /// A name alone (Yes), or followed by `Yes` or `No` (`Options`, `SMF119`).
    Flag(fn(&mut S, bool)),
    /// One of some words (not case sensitive); then other spellings accepted for them.
    Choice(Words<S>, &'static [(&'static str, &'static str)]),
    /// A path; a relative one is taken from the configuration file's directory.
    Path(fn(&mut S, PathBuf)),
    /// A mailbox `user@host.domain` (angle brackets optional; case kept).
    Mailbox(fn(&mut S, String)),
    /// Anything else: reads the word itself and reports its own problems.
    Custom(fn(&mut Diags, &mut S, &Word)),
}

/// The words of a [`Kind::Choice`], each with what it sets.
pub(crate) type Words<S> = &'static [(&'static str, fn(&mut S))];

/// The parameters of a block statement, and how statements of it combine.
pub(crate) struct Block<S: 'static, R: 'static> {
    pub params: &'static [Param<S, R>],
    /// Error messages name the statement too (`Timeout AnyCmd`, not `AnyCmd`).
    pub qualified: bool,
    /// Some: each statement replaces the earlier one as a whole: this runs, then its
    /// parameters' defaults apply again. None: a statement changes only the parameters
    /// it names.
    pub replace: Option<fn(&mut S)>,
    /// Without the statement the feature is off: its parameters' defaults apply only
    /// when it is given (`ExtendedRetry`).
    pub optional: bool,
    /// Rules across parameters, checked after a block (at the keyword's line).
    pub check: Option<fn(&mut Diags, &mut S, u32)>,
}

/// One parameter of a block.
pub(crate) struct Param<S: 'static, R: 'static> {
    pub name: &'static str,
    pub kind: Kind<S>,
    /// As [`Def::default`].
    pub default: Option<&'static str>,
    /// Whether REFRESH can change it (a live statement may hold a restart-only
    /// parameter: `Options TestMode`).
    pub refresh: Refresh,
    /// Its value as DISPLAY CONFIG shows it; None: not shown. An empty string shows
    /// the name alone.
    pub show: fn(&R) -> Option<String>,
}

/// Whether REFRESH may change a statement.
pub(crate) enum Refresh {
    /// The new value applies (see the README for when each is used).
    Live,
    /// The running value is kept, with a CSM5013W warning, when the new file differs.
    Restart {
        same: fn(&Config, &Config) -> bool,
        keep: fn(&mut Config, &Config),
    },
}

/// Declares a restart-only statement by the field(s) of [`Config`] it sets.
macro_rules! restart {
    ($($field:ident).+) => {
        $crate::config::table::Refresh::Restart {
            same: |a, b| a.$($field).+ == b.$($field).+,
            keep: |new, old| new.$($field).+.clone_from(&old.$($field).+),
        }
    };
}
pub(crate) use restart;

/// How DISPLAY CONFIG shows a statement.
pub(crate) enum Show {
    /// `Name value`.
    Value(fn(&Config) -> String),
    /// `Name value`, once for each value (repeatable statements).
    Each(fn(&Config) -> Vec<String>),
    /// `Name { Param value … }` from the block's parameters.
    Params,
    /// Whole lines of its own.
    Lines(fn(&Config) -> Vec<String>),
    /// Not shown.
    Nothing,
}

impl Def {
    /// A statement that takes one value, shown as `Name value`.
    pub const fn value(name: &'static str, kind: Kind<Draft>, show: fn(&Config) -> String) -> Self {
        Self {
            name,
            form: Form::Value(kind),
            repeatable: false,
            default: None,
            refresh: Refresh::Live,
            show: Show::Value(show),
        }
    }

    /// A repeatable statement that takes one value, shown once for each.
    pub const fn each(
        name: &'static str,
        kind: Kind<Draft>,
        show: fn(&Config) -> Vec<String>,
    ) -> Self {
        Self {
            repeatable: true,
            show: Show::Each(show),
            ..Self::value(name, kind, |_| String::new())
        }
    }

    /// A block statement, shown from its parameters.
    pub const fn block(name: &'static str, block: &'static Block<Draft, Config>) -> Self {
        Self {
            name,
            form: Form::Block(block),
            repeatable: false,
            default: None,
            refresh: Refresh::Live,
            show: Show::Params,
        }
    }

    /// A CSSMTP statement not implemented yet.
    pub const fn not_yet(name: &'static str) -> Self {
        Self {
            form: Form::NotYet,
            show: Show::Nothing,
            ..Self::block(name, &Block::EMPTY)
        }
    }

    pub const fn default(self, text: &'static str) -> Self {
        Self {
            default: Some(text),
            ..self
        }
    }

    pub const fn refresh(self, refresh: Refresh) -> Self {
        Self { refresh, ..self }
    }

    pub const fn show(self, show: Show) -> Self {
        Self { show, ..self }
    }
}

impl<S, R> Block<S, R> {
    const EMPTY: Self = Self::of(&[]);

    /// A block whose statements change only the parameters they name.
    pub const fn of(params: &'static [Param<S, R>]) -> Self {
        Self {
            params,
            qualified: true,
            replace: None,
            optional: false,
            check: None,
        }
    }
}

impl<S, R> Param<S, R> {
    pub const fn new(name: &'static str, kind: Kind<S>, show: fn(&R) -> Option<String>) -> Self {
        Self {
            name,
            kind,
            default: None,
            refresh: Refresh::Live,
            show,
        }
    }

    pub const fn default(self, text: &'static str) -> Self {
        Self {
            default: Some(text),
            ..self
        }
    }

    pub const fn refresh(self, refresh: Refresh) -> Self {
        Self { refresh, ..self }
    }
}

impl<S> Kind<S> {
    pub const fn number(min: u64, max: u64, set: fn(&mut S, u64)) -> Self {
        Self::Number {
            min,
            max,
            unit: "",
            set,
        }
    }
}

/// `Yes` or `No`, as DISPLAY CONFIG shows a flag.
pub(crate) fn yes(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

/// A flag of `SMF119`: its name alone when on.
pub(crate) fn named(b: bool) -> Option<String> {
    b.then(String::new)
}

/// `Name { Param value … }`: the parameters that show a value, in table order.
pub(crate) fn block_line<S, R>(name: &str, params: &[Param<S, R>], r: &R) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|p| {
            (p.show)(r).map(|v| {
                if v.is_empty() {
                    p.name.to_owned()
                } else {
                    format!("{} {v}", p.name)
                }
            })
        })
        .collect();
    format!("{name} {{ {} }}", parts.join(" "))
}
