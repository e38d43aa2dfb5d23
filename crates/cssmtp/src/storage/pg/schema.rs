//! The database's tables, created and migrated by cssmtp.
//!
//! `cssmtp_schema` holds the schema's version. At start cssmtp takes an advisory lock
//! (so that instances starting together migrate once), creates what is missing, and
//! refuses a schema newer than it knows (written by a newer cssmtp): it says so and
//! does not start, rather than write rows that binary would misread.
//!
//! Version 1:
//!
//! * `cssmtp_spool_file`: one row per spool file: `writer` (ExtWrtName), `name`
//!   (unique per writer: a retried submit never doubles mail), `ready` (the producer
//!   finished writing it), `state` (`waiting`, `claimed`, `held`), the lease
//!   (`lease_owner`, `lease_until`) and its fencing token `fence`, raised at each claim;
//!   a finished file's row is deleted (with its chunks and records).
//! * `cssmtp_spool_chunk`: the text, `(file_id, seq, data)`, each at most 1 MiB,
//!   written only in the transaction that created the file (a trigger refuses the
//!   rest): no producer can add text to another's file.
//! * `cssmtp_spool_record`: the queue's state of a claimed file, in order: the typed
//!   records the checkpoint journal writes (JSON), each written only under the
//!   current fencing token.
//! * `cssmtp_held`: what is kept for the operator: held files' reports.
//! * `cssmtp_instance`: the instances running, each renewing its row (the cluster view
//!   of DISPLAY SPOOLSTATUS).
//!
//! A trigger NOTIFYs channel `cssmtp_spool` with the writer's name when a ready file
//! arrives.
//!
//! Version 2 (parked mail shared by the cluster, [`super::parked`]):
//!
//! * `cssmtp_parked`: one row per mail in extended retry: its writer, where it came
//!   from (`spool_file`, `job_name`, `job_id`, `mail`), `first_attempt` (its Age counts
//!   from here), `tried` (its last turn), the instance that parked it, and the lease of
//!   its turns (`lease_owner`, `lease_until`, `fence`);
//! * `cssmtp_parked_chunk`: its copy, the MailDirectory's batch-SMTP file format, in
//!   chunks of at most 1 MiB.

use std::io;

use tokio_postgres::Client;

use super::io_err;

/// The schema version this binary writes.
pub const VERSION: i32 = 2;

/// Any number; the advisory lock of migrations.
const MIGRATION_LOCK: i64 = 0x6373_736d_7470;

const V1: &str = r"
CREATE TABLE cssmtp_spool_file (
    id          bigserial PRIMARY KEY,
    writer      text NOT NULL CHECK (length(writer) BETWEEN 1 AND 32),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    submitted   timestamptz NOT NULL DEFAULT now(),
    ready       boolean NOT NULL DEFAULT true,
    state       text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'claimed', 'held')),
    lease_owner text,
    lease_until timestamptz,
    fence       bigint NOT NULL DEFAULT 0,
    UNIQUE (writer, name)
);
CREATE INDEX cssmtp_spool_file_queue ON cssmtp_spool_file (writer, state, id);
CREATE TABLE cssmtp_spool_chunk (
    file_id bigint NOT NULL REFERENCES cssmtp_spool_file (id) ON DELETE CASCADE,
    seq     integer NOT NULL CHECK (seq >= 0),
    data    bytea NOT NULL CHECK (octet_length(data) <= 1048576),
    PRIMARY KEY (file_id, seq)
);
CREATE TABLE cssmtp_spool_record (
    file_id bigint NOT NULL REFERENCES cssmtp_spool_file (id) ON DELETE CASCADE,
    seq     bigserial,
    record  text NOT NULL,
    PRIMARY KEY (file_id, seq)
);
CREATE TABLE cssmtp_held (
    id       bigserial PRIMARY KEY,
    writer   text NOT NULL,
    name     text NOT NULL,
    kind     text NOT NULL,
    created  timestamptz NOT NULL DEFAULT now(),
    data     bytea NOT NULL
);
CREATE TABLE cssmtp_instance (
    writer      text NOT NULL,
    name        text NOT NULL,
    started     timestamptz NOT NULL,
    seen        timestamptz NOT NULL,
    alive_until timestamptz NOT NULL,
    PRIMARY KEY (writer, name)
);
CREATE FUNCTION cssmtp_chunk_check() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ours boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.cssmtp_spool_file f WHERE f.id = $1
                    AND f.xmin::text = (txid_current() %% 4294967296)::text)', TG_TABLE_SCHEMA)
        INTO ours USING NEW.file_id;
    IF NOT ours THEN
        RAISE EXCEPTION 'a spool file''s text is written in the transaction that creates the file';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER cssmtp_chunk_check BEFORE INSERT ON cssmtp_spool_chunk
    FOR EACH ROW EXECUTE FUNCTION cssmtp_chunk_check();
CREATE FUNCTION cssmtp_spool_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ready AND NEW.state = 'waiting' THEN
        PERFORM pg_notify('cssmtp_spool', NEW.writer);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER cssmtp_spool_notify AFTER INSERT OR UPDATE OF ready, state ON cssmtp_spool_file
    FOR EACH ROW EXECUTE FUNCTION cssmtp_spool_notify();
";

const V2: &str = r"
CREATE TABLE cssmtp_parked (
    id            bigserial PRIMARY KEY,
    writer        text NOT NULL,
    spool_file    text NOT NULL,
    job_name      text NOT NULL,
    job_id        text NOT NULL,
    mail          integer NOT NULL,
    parked_by     text NOT NULL,
    parked        timestamptz NOT NULL DEFAULT now(),
    first_attempt timestamptz NOT NULL,
    tried         timestamptz NOT NULL DEFAULT now(),
    lease_owner   text,
    lease_until   timestamptz,
    fence         bigint NOT NULL DEFAULT 0
);
CREATE INDEX cssmtp_parked_writer ON cssmtp_parked (writer, tried);
CREATE TABLE cssmtp_parked_chunk (
    parked_id bigint NOT NULL REFERENCES cssmtp_parked (id) ON DELETE CASCADE,
    seq       integer NOT NULL CHECK (seq >= 0),
    data      bytea NOT NULL CHECK (octet_length(data) <= 1048576),
    PRIMARY KEY (parked_id, seq)
);
";

/// Creates or migrates the schema; returns the version found before (0: none).
///
/// # Errors
/// The database cannot be used, or its schema is newer than this binary knows.
pub async fn migrate(client: &Client) -> io::Result<i32> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(io_err)?;
    let result = migrate_locked(client).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn migrate_locked(client: &Client) -> io::Result<i32> {
    // Created when missing (checked first: no NOTICE for an existing table).
    let exists: bool = client
        .query_one("SELECT to_regclass('cssmtp_schema') IS NOT NULL", &[])
        .await
        .map_err(io_err)?
        .get(0);
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS cssmtp_schema (version integer NOT NULL, written_by text NOT NULL)",
            )
            .await
            .map_err(io_err)?;
    }
    let found: i32 = client
        .query_opt("SELECT max(version) FROM cssmtp_schema", &[])
        .await
        .map_err(io_err)?
        .and_then(|row| row.get::<_, Option<i32>>(0))
        .unwrap_or(0);
    if found > VERSION {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "the spool database's schema is version {found}, written by a newer cssmtp; this cssmtp {} knows versions up to {VERSION}: upgrade it",
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    let written_by = format!("cssmtp {}", env!("CARGO_PKG_VERSION"));
    for (version, ddl) in [(1, V1), (2, V2)] {
        if found < version {
            let sql = format!(
                "BEGIN; {ddl} INSERT INTO cssmtp_schema VALUES ({version}, '{written_by}'); COMMIT;"
            );
            if let Err(e) = client.batch_execute(&sql).await {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(io_err(e));
            }
        }
    }
    Ok(found)
}
