//! The SMTP session reports and never persists (issue 11 point 3): before a mail's final
//! "." it tells the mail's owner which recipients are about to get it, through a
//! `DeliveryAck`, and sends the "." only once the owner says it has recorded them; after
//! the reply it reports the outcome. Over real loopback TCP against `cssmtp sink`.

use std::sync::{Arc, Mutex};

use cssmtp::config::Timeouts;
use cssmtp::delivery::session::{Session, SessionParams};
use cssmtp::delivery::{DeliveryAck, MailJob, MailKey, MailText, NotRecorded, Problem, RcptResult};
use cssmtp::sink::{Sink, SinkOptions};
use tokio::sync::{mpsc, oneshot};

use crate::support::sink;

/// What the session told the owner, and what the server had received at that moment.
#[derive(Debug, Default)]
struct Told {
    before_dot: Vec<(Vec<usize>, u64)>,
    after_dot: Vec<(Vec<usize>, bool, u64)>,
}

struct Owner {
    sink: Arc<Sink>,
    told: Mutex<Told>,
    refuse: bool,
}

impl DeliveryAck for Owner {
    fn before_dot(&self, rcpts: &[usize]) -> Result<Option<oneshot::Receiver<()>>, NotRecorded> {
        let received = self.sink.count();
        self.told
            .lock()
            .unwrap()
            .before_dot
            .push((rcpts.to_vec(), received));
        if self.refuse {
            return Err(NotRecorded("the store cannot write".into()));
        }
        Ok(None)
    }

    fn after_dot(&self, rcpts: &[usize], delivered: bool) {
        let received = self.sink.count();
        self.told
            .lock()
            .unwrap()
            .after_dot
            .push((rcpts.to_vec(), delivered, received));
    }
}

fn job(owner: &Arc<Owner>, recipients: &[&str]) -> MailJob {
    let (reply, _) = mpsc::unbounded_channel();
    MailJob {
        key: MailKey {
            tkid: 1,
            ordinal: 1,
        },
        reverse_path: "from@example.com".into(),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        // Their indexes among the mail's recipients (the first two were final before).
        rcpt_index: (2..2 + recipients.len()).collect(),
        needs_tls: false,
        eight_bit: false,
        headers: Arc::from(&b"X-Test: 1\r\n"[..]),
        text: MailText::Memory(Arc::from(&b"Subject: t\r\n\r\nhello\r\n"[..])),
        size: 40,
        reply,
        ack: Some(Arc::clone(owner) as Arc<dyn DeliveryAck>),
    }
}

async fn send(refuse: bool, recipients: &[&str]) -> (Arc<Owner>, Vec<RcptResult>) {
    let sink = Arc::new(sink(SinkOptions::default()).await);
    let owner = Arc::new(Owner {
        sink: Arc::clone(&sink),
        told: Mutex::default(),
        refuse,
    });
    let timeouts = Timeouts::default();
    let params = SessionParams {
        helo_name: "test.example",
        timeouts: &timeouts,
    };
    let mut session = Session::open(sink.addr, None, &params).await.unwrap();
    let results = session.send_mail(&job(&owner, recipients), &params).await;
    (owner, results)
}

#[tokio::test]
async fn the_session_acknowledges_before_the_final_dot_and_reports_after_the_reply() {
    let (owner, results) = send(
        false,
        &["a@example.com", "permfail@example.com", "b@example.com"],
    )
    .await;
    let told = owner.told.lock().unwrap();
    assert_eq!(
        told.before_dot,
        vec![(vec![2, 4], 0)],
        "the accepted recipients (by index in the mail), before the server had the mail"
    );
    assert_eq!(
        told.after_dot,
        vec![(vec![2, 4], true, 1)],
        "after the reply"
    );
    assert!(matches!(results[0], RcptResult::Delivered { .. }));
    assert!(matches!(results[1], RcptResult::Undeliverable(_)));
    assert!(matches!(results[2], RcptResult::Delivered { .. }));
    assert_eq!(owner.sink.count(), 1);
}

#[tokio::test]
async fn no_final_dot_goes_without_its_record() {
    let (owner, results) = send(true, &["a@example.com"]).await;
    let told = owner.told.lock().unwrap();
    assert_eq!(told.before_dot.len(), 1);
    assert!(told.after_dot.is_empty(), "nothing was sent to report");
    match &results[0] {
        RcptResult::Retry(f) => assert!(matches!(f.problem, Problem::NotRecorded(_)), "{f}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(owner.sink.count(), 0, "the server never got the mail");
}
