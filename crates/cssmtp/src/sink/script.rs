//! Behaviour scripted by a recipient's local part (see the module table), and the
//! replies of injected faults.

use super::shared::{Fault, Shared};

/// What happens to a mail after its recipients were accepted.
#[derive(Clone, Copy)]
pub(super) enum Scripted {
    Accept,
    DataTempFail,
    DataReject,
    DropInData,
    /// A 250 sent with the 354, the final "." refused.
    EarlyReply,
    /// An unsolicited reply after the mail's 250.
    ExtraReply,
    /// DATA answered 421, the connection closed.
    CloseAtData,
    /// The final "." answered 421 (the mail discarded), the connection closed.
    CloseAfterDot,
}

/// What a recipient's script does at RCPT TO.
#[derive(Clone, Copy)]
pub(super) enum AtRcpt {
    /// RCPT TO answered with this reply; the recipient is not taken.
    Refuse(&'static str),
    /// The connection is closed at this RCPT TO.
    Drop,
    /// The recipient is taken, and the mail then goes as this says.
    Accept(Scripted),
}

/// The reply of a server closing the session (RFC 5321 §3.8).
pub(super) const CLOSING: &str = "421 4.3.2 Service shutting down, closing (scripted)\r\n";

pub(super) const EARLY_250: &str = "250 2.0.0 Ok: queued (scripted, sent before the text)\r\n";
pub(super) const EXTRA_REPLY: &str =
    "554 5.7.0 Unsolicited reply no command asked for (scripted)\r\n";

const TEMPFAIL: &str = "451 4.2.1 Mailbox busy, try again later (scripted)\r\n";

/// The script of recipient `rcpt`; `…-once` and `tempfailN` scripts count in `shared`.
pub(super) fn script_for(rcpt: &str, shared: &Shared) -> AtRcpt {
    let local = rcpt.split('@').next().unwrap_or("").to_ascii_lowercase();
    let starts = |p: &str| local.starts_with(p);
    let times = if starts("tempfail-once") {
        Some(1)
    } else {
        local
            .strip_prefix("tempfail")
            .and_then(|rest| rest.chars().next())
            .and_then(|c| c.to_digit(10))
    };
    if let Some(times) = times {
        let refused = shared.refusals.lock().is_ok_and(|mut counts| {
            let count = counts.entry(rcpt.to_ascii_lowercase()).or_default();
            *count += 1;
            *count <= times
        });
        if refused {
            AtRcpt::Refuse(TEMPFAIL)
        } else {
            AtRcpt::Accept(Scripted::Accept)
        }
    } else if starts("early-250") || starts("extra-reply") {
        let once = local.contains("-once");
        let misbehave = !once || shared.first_time(rcpt);
        let script = match (misbehave, starts("early-250")) {
            (false, _) => Scripted::Accept,
            (true, true) => Scripted::EarlyReply,
            (true, false) => Scripted::ExtraReply,
        };
        AtRcpt::Accept(script)
    } else if starts("close-at-data") || starts("close-after-dot") {
        let misbehave = !local.contains("-once") || shared.first_time(rcpt);
        let script = match (misbehave, starts("close-at-data")) {
            (false, _) => Scripted::Accept,
            (true, true) => Scripted::CloseAtData,
            (true, false) => Scripted::CloseAfterDot,
        };
        AtRcpt::Accept(script)
    } else if starts("data-tempfail") {
        AtRcpt::Accept(Scripted::DataTempFail)
    } else if starts("data-reject") {
        AtRcpt::Accept(Scripted::DataReject)
    } else if starts("drop-in-data") {
        AtRcpt::Accept(Scripted::DropInData)
    } else if starts("drop-at-rcpt") {
        AtRcpt::Drop
    } else if starts("tempfail") {
        AtRcpt::Refuse(TEMPFAIL)
    } else if starts("reject") || starts("permfail") || starts("unknown") {
        AtRcpt::Refuse("550 5.1.1 No such user here (scripted)\r\n")
    } else {
        AtRcpt::Accept(Scripted::Accept)
    }
}

/// Where in the dialogue an injected fault replaces a reply.
#[derive(Clone, Copy)]
pub(super) enum FaultAt {
    MailFrom,
    RcptTo,
    Data,
    Dot,
}

impl FaultAt {
    fn name(self) -> &'static str {
        match self {
            Self::MailFrom => "MAIL FROM",
            Self::RcptTo => "RCPT TO",
            Self::Data => "DATA",
            Self::Dot => "the final \".\"",
        }
    }
}

/// The reply an injected fault gives in place of the real one.
pub(super) fn fault_reply(fault: Fault, at: FaultAt) -> String {
    let stage = at.name();
    match (fault, at) {
        (Fault::TempFail, _) => {
            format!("451 4.3.0 Temporary failure at {stage} (injected fault)\r\n")
        }
        (Fault::PermFail, FaultAt::RcptTo) => {
            "550 5.1.1 Mailbox refused (injected fault)\r\n".to_owned()
        }
        (Fault::PermFail, _) => format!("554 5.3.0 Refused at {stage} (injected fault)\r\n"),
    }
}
