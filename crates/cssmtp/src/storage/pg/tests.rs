//! The shared spool against a throwaway PostgreSQL ([`super::testdb`]): both storage
//! conformance suites, the fencing of a stale lease, the schema's versioning and an
//! idempotent submit.

use std::time::Duration;

use super::schema;
use super::source::{Held, Leases, PgSource};
use super::store::PgStore;
use super::submit::{Submitted, submit, submit_named};
use super::testdb;
use super::{Db, DbSettings};
use crate::queue::state::Change;
use crate::spool::submit::JobInfo;
use crate::storage::conformance::source::SourceHarness;
use crate::storage::conformance::{self, Harness};
use crate::storage::source::SpoolSource;
use crate::storage::{FileId, StateStore};

const WRITER: &str = "W";

fn settings(url: &str, instance: &str) -> DbSettings {
    DbSettings {
        url: url.to_owned(),
        password_file: None,
        lease: Duration::from_secs(60),
        instance: instance.to_owned(),
        pool: 4,
    }
}

async fn connected(url: &str, instance: &str) -> Db {
    let db = Db::new(&settings(url, instance)).expect("settings");
    let client = db.client().await.expect("connects");
    schema::migrate(&client).await.expect("migrates");
    db
}

/// Claims `file` (creating its row) for `owner`: its lease.
async fn claim_row(db: &Db, file: &FileId, owner: &str) -> Held {
    let client = db.client().await.expect("connects");
    client
        .execute(
            "INSERT INTO cssmtp_spool_file (writer, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&WRITER, &file.as_str()],
        )
        .await
        .expect("inserts");
    let row = client
        .query_one(
            "UPDATE cssmtp_spool_file SET state = 'claimed', lease_owner = $3,
                 lease_until = now() + interval '1 minute', fence = fence + 1
             WHERE writer = $1 AND name = $2 RETURNING id, fence",
            &[&WRITER, &file.as_str(), &owner],
        )
        .await
        .expect("claims");
    Held {
        id: row.get(0),
        fence: row.get(1),
    }
}

/// The store started again on the same database, as a restarted instance.
struct StoreHarness {
    url: String,
}

impl Harness for StoreHarness {
    type Store = PgStore;

    async fn start(&mut self, claimed: &[FileId]) -> PgStore {
        let db = connected(&self.url, "host-a").await;
        let leases = Leases::default();
        for f in claimed {
            leases.hold(f.clone(), claim_row(&db, f, "host-a").await);
        }
        PgStore::new(db.clone(), leases, super::Health::new(db))
    }

    async fn crash(&mut self, store: PgStore) {
        drop(store);
    }
}

#[tokio::test]
async fn the_database_passes_the_storage_conformance_suite() {
    let url = testdb::shared().database().await.expect("a database");
    conformance::run(StoreHarness { url }).await;
}

struct SourceDb {
    url: String,
    scratch: tempfile::TempDir,
}

impl SourceHarness for SourceDb {
    type Source = PgSource;

    async fn submit(&mut self, name: &str, text: &[u8]) {
        let s = settings(&self.url, "host-a");
        let done = submit_named(&s, WRITER, name, text).await.expect("submits");
        assert_eq!(done, Submitted::New(name.to_owned()));
    }

    async fn start(&mut self) -> PgSource {
        let db = connected(&self.url, "host-a").await;
        PgSource::new(
            db.clone(),
            super::Health::new(db),
            WRITER.into(),
            "host-a".into(),
            Duration::from_secs(60),
            Leases::default(),
            self.scratch.path().to_owned(),
        )
    }
}

#[tokio::test]
async fn the_database_passes_the_source_conformance_suite() {
    let url = testdb::shared().database().await.expect("a database");
    let scratch = tempfile::tempdir().expect("a temporary directory");
    conformance::source::run(SourceDb { url, scratch }).await;
}

#[tokio::test]
async fn a_holder_whose_lease_was_taken_over_writes_nothing() {
    let url = testdb::shared().database().await.expect("a database");
    let file = FileId::new("STALE@1");
    // Instance a holds the file and records an attempt.
    let a = connected(&url, "host-a").await;
    let leases_a = Leases::default();
    leases_a.hold(file.clone(), claim_row(&a, &file, "host-a").await);
    let store_a = PgStore::new(a.clone(), leases_a, super::Health::new(a));
    let (_, file_a) = store_a.open(&file);
    let attempt = |attempts| Change::Attempted {
        mail: 1,
        attempts,
        retry: vec![0],
        failed: Vec::new(),
    };
    assert!(file_a.record(&attempt(1)));
    // Its lease expires; instance b takes the file over (a higher fencing token).
    let b = connected(&url, "host-b").await;
    let leases_b = Leases::default();
    leases_b.hold(file.clone(), claim_row(&b, &file, "host-b").await);
    // a wakes up: nothing it writes is recorded, and no final "." may go out.
    assert!(!file_a.record(&attempt(2)), "a stale token is refused");
    assert!(file_a.ack(1).before_dot(&[0]).is_err(), "no final \".\"");
    assert!(!file_a.is_writable(), "the stale handle holds sending back");
    // b finds what a recorded while it held the file, and nothing after.
    let store_b = PgStore::new(b.clone(), leases_b, super::Health::new(b));
    let (recovered, file_b) = store_b.open(&file);
    let mail = recovered.get(&1).cloned().unwrap_or_default();
    assert_eq!(
        mail.attempts, 1,
        "only the write under the live lease counts"
    );
    assert!(
        mail.in_doubt.is_empty(),
        "the refused \"sent\" is not recorded"
    );
    assert!(file_b.record(&attempt(2)), "the new holder writes");
}

#[tokio::test]
async fn an_older_binary_refuses_a_newer_schema() {
    let url = testdb::shared().database().await.expect("a database");
    let db = connected(&url, "host-a").await;
    let client = db.client().await.expect("connects");
    client
        .execute(
            "INSERT INTO cssmtp_schema VALUES ($1, 'cssmtp from the future')",
            &[&(schema::VERSION + 1)],
        )
        .await
        .expect("inserts");
    let e = schema::migrate(&client).await.expect_err("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
    assert!(e.to_string().contains("newer cssmtp"), "{e}");
    // Migrating the current version again changes nothing.
    client
        .execute(
            "DELETE FROM cssmtp_schema WHERE version > $1",
            &[&schema::VERSION],
        )
        .await
        .expect("deletes");
    assert_eq!(
        schema::migrate(&client).await.expect("migrates"),
        schema::VERSION
    );
}

#[tokio::test]
async fn a_retried_submit_spools_once_and_big_text_goes_in_chunks() {
    let url = testdb::shared().database().await.expect("a database");
    let s = settings(&url, "host-a");
    let job = JobInfo {
        job_name: "PAYROLL".into(),
        job_id: "J0000042".into(),
    };
    // Three chunks and a bit.
    let mut text =
        b"HELO a.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
            .to_vec();
    while text.len() < 3 * super::CHUNK + 10 {
        text.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n",
        );
    }
    text.extend_from_slice(b".\r\nQUIT\r\n");
    let first = submit(&s, WRITER, &job, 1, &text).await.expect("submits");
    let Submitted::New(name) = first else {
        panic!("the first submit spools: {first:?}")
    };
    assert!(name.starts_with("PAYROLL.J0000042."), "{name}");
    let again = submit(&s, WRITER, &job, 1, &text).await.expect("submits");
    assert_eq!(
        again,
        Submitted::Already(name.clone()),
        "a retry adds nothing"
    );
    // Read back through the source: the text as written, from four chunks.
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let db = connected(&url, "host-a").await;
    let source = PgSource::new(
        db.clone(),
        super::Health::new(db),
        WRITER.into(),
        "host-a".into(),
        Duration::from_secs(60),
        Leases::default(),
        scratch.path().to_owned(),
    );
    let mut waiting = source.waiting().await.expect("lists");
    assert_eq!(waiting.len(), 1, "spooled once");
    let candidate = waiting.pop().expect("one");
    let claim = source.claim(&candidate).expect("claims").expect("won");
    let opened = source.open(&claim).expect("opens");
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut &opened.reader, &mut back).expect("reads");
    assert_eq!(back.len(), text.len());
    assert!(back == text, "the text as submitted");
    let db = connected(&url, "host-a").await;
    let client = db.client().await.expect("connects");
    let chunks: i64 = client
        .query_one("SELECT count(*) FROM cssmtp_spool_chunk", &[])
        .await
        .expect("counts")
        .get(0);
    assert_eq!(chunks, 4);
    assert_eq!(
        std::fs::read_dir(scratch.path()).expect("lists").count(),
        0,
        "the copy is unlinked"
    );
}

#[test]
fn the_spool_database_statements_keep_credentials_out_of_the_configuration() {
    let check = |text: &str| {
        let (config, diags) = crate::config::validate::validate(
            std::path::Path::new("/etc/cssmtp/cssmtp.conf"),
            &format!("TargetServer {{ TargetIp 192.0.2.1 }}\n{text}"),
        );
        (
            config,
            diags.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )
    };
    let (config, diags) = check(
        "SpoolDatabase postgresql://cssmtp@db.example:5433/spool\nSpoolDatabasePasswordFile /etc/cssmtp/db.pw\nSpoolDatabaseLease 20\nSpoolDatabaseInstance host-a\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    let settings = config
        .and_then(|c| c.spool_database())
        .expect("the database is selected");
    assert_eq!(settings.url, "postgresql://cssmtp@db.example:5433/spool");
    assert_eq!(settings.lease, Duration::from_secs(20));
    assert_eq!(settings.instance, "host-a");
    assert_eq!(
        settings.password_file.as_deref(),
        Some(std::path::Path::new("/etc/cssmtp/db.pw"))
    );
    let (_, diags) = check("SpoolDatabase postgresql://cssmtp:secret@db.example/spool\n");
    assert!(
        diags.iter().any(|d| d.contains("must not hold a password")),
        "{diags:?}"
    );
    let (_, diags) = check(
        "SpoolDatabase postgresql://cssmtp@db.example/spool?sslmode=verify-full&sslrootcert=/etc/ca.pem\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    let (_, diags) = check("SpoolDatabase postgresql://cssmtp@db.example/spool?sslmode=always\n");
    assert!(
        diags.iter().any(|d| d.contains("sslmode must be")),
        "{diags:?}"
    );
    let (_, diags) = check("SpoolDatabase /var/spool/cssmtp\n");
    assert!(
        diags.iter().any(|d| d.contains("postgresql:// URL")),
        "{diags:?}"
    );
    // Absent: the directory spool.
    let (config, _) = check("");
    assert!(config.is_some_and(|c| c.spool_database().is_none()));
}

#[tokio::test]
async fn no_one_adds_text_to_a_file_already_spooled() {
    let url = testdb::shared().database().await.expect("a database");
    let s = settings(&url, "host-a");
    let name = "VICTIM.J0000001.x";
    submit_named(&s, WRITER, name, b"HELO a\r\n")
        .await
        .expect("submits");
    let db = connected(&url, "host-a").await;
    let client = db.client().await.expect("connects");
    let id: i64 = client
        .query_one("SELECT id FROM cssmtp_spool_file WHERE name = $1", &[&name])
        .await
        .expect("found")
        .get(0);
    // Another producer (another transaction) appends a chunk: refused.
    let e = client
        .execute(
            "INSERT INTO cssmtp_spool_chunk (file_id, seq, data) VALUES ($1, 1, $2)",
            &[&id, &b"RCPT TO:<thief@example.com>\r\n".as_slice()],
        )
        .await
        .expect_err("refused");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("transaction that creates the file")),
        "{e}"
    );
    // A name beyond 255 characters is refused too.
    let long = "X".repeat(256);
    assert!(
        submit_named(&s, WRITER, &long, b"HELO a\r\n")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn results_that_came_while_the_database_was_away_are_recorded_when_it_is_back() {
    // A server of its own: it is stopped and started again.
    let server = testdb::TestServer::start().expect("a server");
    let url = server.database().await.expect("a database");
    let file = FileId::new("AWAY@1");
    let db = connected(&url, "host-a").await;
    let leases = Leases::default();
    leases.hold(file.clone(), claim_row(&db, &file, "host-a").await);
    let store = PgStore::new(db.clone(), leases, super::Health::new(db));
    let (_, handle) = store.open(&file);
    let ack = handle.ack(1);
    assert!(ack.before_dot(&[0, 1]).is_ok());
    server.stop();
    // The reply came; the database is away: kept, not lost.
    ack.after_dot(&[0, 1], true);
    assert!(!store.is_writable(), "the store says it cannot write");
    assert!(
        ack.before_dot(&[2]).is_err(),
        "no final \".\" without its record"
    );
    assert!(
        !handle.record(&Change::Returned { mail: 1 }),
        "not durable yet"
    );
    server.restart().expect("starts again");
    // The next write writes what was kept first, in order.
    assert!(handle.record(&Change::Attempted {
        mail: 2,
        attempts: 1,
        retry: vec![0],
        failed: Vec::new(),
    }));
    drop((ack, handle, store));
    let again = connected(&url, "host-a").await;
    let leases = Leases::default();
    leases.hold(file.clone(), claim_row(&again, &file, "host-a").await);
    let store = PgStore::new(again.clone(), leases, super::Health::new(again));
    let (recovered, _) = store.open(&file);
    let mail = recovered.get(&1).cloned().unwrap_or_default();
    assert_eq!(
        mail.delivered,
        std::collections::BTreeSet::from([0, 1]),
        "the result kept is recorded"
    );
    assert!(
        mail.in_doubt.is_empty(),
        "not in doubt: the reply was recorded"
    );
    assert!(mail.returned, "kept in order");
    assert_eq!(recovered.get(&2).map(|m| m.attempts), Some(1));
}
