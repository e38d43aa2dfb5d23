//! Parked mail in the shared spool against a throwaway PostgreSQL: the parked
//! conformance suite, and turns leased to one instance at a time (another reads the
//! mail as busy; a holder whose lease was taken over changes nothing).

use std::time::Duration;

use super::parked::{PgParked, park};
use super::{Db, DbSettings, schema, testdb};
use crate::storage::MailCopy;
use crate::storage::conformance::parked::{self as suite, ParkedHarness, copy_of, full_mail};
use crate::storage::parked::{ParkedId, ParkedRead, ParkedStore};

const WRITER: &str = "W";
const INTERVAL: Duration = Duration::from_secs(60);

async fn connected(url: &str, instance: &str) -> Db {
    let db = Db::new(&DbSettings {
        url: url.to_owned(),
        password_file: None,
        lease: Duration::from_secs(60),
        instance: instance.to_owned(),
        pool: 2,
    })
    .expect("settings");
    let client = db.client().await.expect("connects");
    schema::migrate(&client).await.expect("migrates");
    db
}

fn store(db: &Db, instance: &str, scratch: &std::path::Path) -> PgParked {
    PgParked::new(
        db.clone(),
        WRITER.into(),
        instance.into(),
        Duration::from_secs(60),
        INTERVAL,
        scratch.to_owned(),
        "h.example".into(),
    )
}

/// An instance started again on the same database.
struct Parking {
    url: String,
    scratch: std::path::PathBuf,
}

impl ParkedHarness for Parking {
    type Store = PgParked;

    async fn park(&mut self, copy: &MailCopy<'_>) {
        let db = connected(&self.url, "host-a").await;
        let parked = park(
            &db,
            WRITER,
            "host-a",
            "h.example",
            INTERVAL,
            &self.scratch,
            copy,
        );
        parked.await.expect("parks");
    }

    async fn start(&mut self) -> PgParked {
        let db = connected(&self.url, "host-a").await;
        store(&db, "host-a", &self.scratch)
    }
}

#[tokio::test]
async fn the_database_passes_the_parked_conformance_suite() {
    let url = testdb::shared().database().await.expect("a database");
    let scratch = tempfile::tempdir().expect("a temporary directory");
    suite::run(Parking {
        url,
        scratch: scratch.path().to_owned(),
    })
    .await;
    assert_eq!(
        std::fs::read_dir(scratch.path()).expect("lists").count(),
        0,
        "copies are unlinked"
    );
}

/// Makes the lease of parked mail `id` expire, as if its holder had let its turn pass.
async fn expire(db: &Db, id: &ParkedId) {
    let row: i64 = id
        .to_string()
        .rsplit('/')
        .next()
        .and_then(|r| r.parse().ok())
        .expect("a row");
    db.client()
        .await
        .expect("connects")
        .execute(
            "UPDATE cssmtp_parked SET lease_until = now() - interval '1 second' WHERE id = $1",
            &[&row],
        )
        .await
        .expect("updates");
}

#[tokio::test]
async fn a_parked_mail_has_one_turn_at_a_time_and_a_stale_holder_changes_nothing() {
    let url = testdb::shared().database().await.expect("a database");
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let a_db = connected(&url, "host-a").await;
    let b_db = connected(&url, "host-b").await;
    let (a, b) = (
        store(&a_db, "host-a", scratch.path()),
        store(&b_db, "host-b", scratch.path()),
    );
    let (job, full) = (suite::job(), full_mail());
    let copy = copy_of(&job, &full, 1, &["x@example.net", "y@example.net"], false);
    let id = park(
        &a_db,
        WRITER,
        "host-a",
        "h.example",
        INTERVAL,
        scratch.path(),
        &copy,
    )
    .await
    .expect("parks");
    // Both instances list it; it stays with the one that parked it until its turn.
    assert_eq!(b.list().await.len(), 1, "listed by every instance");
    assert!(
        matches!(b.load(&id).await, ParkedRead::Busy),
        "host-a's until its turn"
    );
    let ParkedRead::Found(at_a) = a.load(&id).await else {
        panic!("the instance that parked it has its turn")
    };
    assert!(
        matches!(b.load(&id).await, ParkedRead::Busy),
        "one turn at a time"
    );
    // host-a hangs past its lease; host-b takes the mail over and delivers to x.
    expire(&a_db, &id).await;
    let ParkedRead::Found(at_b) = b.load(&id).await else {
        panic!("taken over once the lease expired")
    };
    b.keep(&id, &at_b, &[1])
        .await
        .expect("host-b's turn is recorded");
    // host-a wakes up: its turn's outcome is refused, and it cannot remove the mail.
    assert!(
        a.keep(&id, &at_a, &[0, 1]).await.is_err(),
        "a stale token is refused"
    );
    a.remove(&id).await;
    let ParkedRead::Busy = a.load(&id).await else {
        panic!("still there, host-b's until its next turn")
    };
    expire(&b_db, &id).await;
    let ParkedRead::Found(now) = a.load(&id).await else {
        panic!("there")
    };
    let left: Vec<&str> = now
        .mail
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(
        left,
        ["y@example.net"],
        "host-b's turn counts, host-a's does not"
    );
    a.remove(&id).await;
    assert!(
        a.list().await.is_empty(),
        "removed by the holder of the turn"
    );
}

#[tokio::test]
async fn a_copy_of_mail_possibly_delivered_is_kept_in_the_database_for_every_instance() {
    let url = testdb::shared().database().await.expect("a database");
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let hold = tempfile::tempdir().expect("a temporary directory");
    let db = connected(&url, "host-a").await;
    let (job, full) = (suite::job(), full_mail());
    let copy = copy_of(&job, &full, 3, &["maybe@example.net"], false);
    let places = super::claim::Places {
        owner: "host-a".into(),
        interval: INTERVAL,
        scratch: scratch.path().to_owned(),
        hold_dir: hold.path().to_owned(),
    };
    let shown = super::claim::hold_in_doubt(&db, WRITER, "h.example", &places, &copy)
        .await
        .expect("kept");
    assert!(shown.contains("cssmtp_held id"), "{shown}");
    // Another instance's operator reads it from the database: a batch-SMTP file.
    let other = connected(&url, "host-b").await;
    let row = other
        .client()
        .await
        .expect("connects")
        .query_one(
            "SELECT name, data FROM cssmtp_held WHERE writer = $1 AND kind = 'in-doubt'",
            &[&WRITER],
        )
        .await
        .expect("one copy");
    let (name, data): (String, Vec<u8>) = (row.get(0), row.get(1));
    assert!(
        name.contains("PAYROLL.J0000042.conformance.mail3"),
        "{name}"
    );
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("RCPT TO:<maybe@example.net>"), "{text}");
    assert!(text.contains("Subject: parked"), "{text}");
    let (mails, _) = cssmtp_batch::parse_bytes(&data, cssmtp_batch::Limits::default());
    assert_eq!(mails.len(), 1, "submittable as it is");
    // Nothing is left on the host.
    assert_eq!(std::fs::read_dir(scratch.path()).expect("lists").count(), 0);
    assert_eq!(std::fs::read_dir(hold.path()).expect("lists").count(), 0);
}
