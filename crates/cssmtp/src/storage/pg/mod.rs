//! The shared spool on PostgreSQL (`SpoolDatabase`): spool files, their text, the
//! queue's per-recipient state and held files in one database that several cssmtp
//! instances (on several hosts) share.
//!
//! * [`schema`]: the tables, created and migrated by cssmtp (versioned: an older
//!   binary refuses a newer schema);
//! * [`source`]: the claiming side ([`crate::storage::source::SpoolSource`]): a claim
//!   is a lease (`lease_owner`, `lease_until`) with a fencing token (`fence`, raised at
//!   every claim), taken by one short statement (`… FOR UPDATE SKIP LOCKED`), renewed by
//!   a timer of this instance ([`Leases`]);
//! * [`store`]: the queue's state ([`crate::storage::StateStore`]): the same typed
//!   records the checkpoint journal writes, one row each, every write carrying the
//!   file's fencing token (a write whose token is stale is refused: not written);
//! * [`claim`]: a claimed file as the queue core finishes it
//!   ([`crate::storage::SpoolClaim`]);
//! * [`parked`]: parked mail (extended retry), its turns leased to one instance at a
//!   time ([`crate::storage::parked::ParkedStore`]);
//! * [`cluster`]: the cluster view of DISPLAY SPOOLSTATUS;
//! * [`daemon`]: `cssmtp run` on it (connected at start, intake woken by NOTIFY);
//! * [`submit`]: `cssmtp submit` into the database (idempotent by the file's name);
//! * [`testdb`]: a throwaway server for tests.
//!
//! **Mail text.** A spool file's text is kept in `cssmtp_spool_chunk` rows of at most
//! [`CHUNK`] bytes (1 MiB), up to [`MAX_FILE`] bytes (1 GiB) per file; `cssmtp submit`
//! refuses a larger file. It is streamed in both directions a chunk at a time: when a
//! file is opened its chunks are copied into an unlinked temporary file (0600, in the
//! writer's spool directory), and the queue core reads that file exactly as it reads a
//! file of the directory spool.
//!
//! **Blocking.** Some of the seam's methods are synchronous (a record before the final
//! "."): they wait for the database on the calling thread (moved off the runtime's
//! worker first when the runtime has several). The connection itself is driven by a
//! runtime of its own ([`Db`]), so a wait never depends on the caller's runtime.

pub mod claim;
pub mod cluster;
pub mod daemon;
pub mod parked;
#[cfg(test)]
mod parked_tests;
pub mod schema;
pub mod source;
pub mod store;
pub mod submit;
#[doc(hidden)]
pub mod testdb;
#[cfg(test)]
mod tests;
pub mod tls;
#[cfg(test)]
mod tls_tests;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::{Client, Socket};

/// The largest chunk of mail text in one row.
pub const CHUNK: usize = 1024 * 1024;
/// The largest spool file kept in the database.
pub const MAX_FILE: u64 = 1024 * 1024 * 1024;

/// How to reach the database (`SpoolDatabase`, `SpoolDatabasePasswordFile`, `PG*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSettings {
    /// `postgresql://[user@]host[:port]/database[?options]`, no password.
    pub url: String,
    /// A file whose first line is the password (else `PGPASSWORD`, else none).
    pub password_file: Option<PathBuf>,
    /// How long a claim lasts without renewal.
    pub lease: Duration,
    /// This instance's name in leases (the host name, and the writer's instance).
    pub instance: String,
    /// Connections to the database for the queue's statements (commits run in
    /// parallel on them; each spool file's records stay in order).
    pub pool: usize,
}

impl DbSettings {
    /// The client's settings: the URL, the user from `PGUSER` when the URL names none,
    /// the password from the file or `PGPASSWORD`, TLS from the URL's `sslmode` and
    /// `sslrootcert` or `PGSSLMODE` and `PGSSLROOTCERT` (see [`tls`]).
    ///
    /// # Errors
    /// The URL is not one, or the password or CA file cannot be read.
    pub fn client_config(&self) -> io::Result<PgConfig> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let tls::Parsed {
            mut config,
            sslmode,
            sslrootcert,
        } = tls::parse_url(&self.url).map_err(invalid)?;
        let sslmode = match sslmode {
            Some(m) => m,
            None => match std::env::var("PGSSLMODE") {
                Ok(m) => tls::SslMode::parse(&m).map_err(|e| invalid(format!("PGSSLMODE: {e}")))?,
                Err(_) => tls::SslMode::Prefer,
            },
        };
        let sslrootcert = sslrootcert.or_else(|| std::env::var("PGSSLROOTCERT").ok());
        let tls = tls::apply(&mut config, sslmode, sslrootcert.as_deref())?;
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER").unwrap_or_else(|_| "cssmtp".into());
            config.user(user);
        }
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot read {}: {e}", file.display()))
            })?;
            config.password(text.lines().next().unwrap_or_default());
        } else if let Ok(p) = std::env::var("PGPASSWORD") {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("cssmtp");
        Ok(PgConfig { config, tls })
    }
}

/// The client's settings with its TLS connector.
#[derive(Clone)]
pub struct PgConfig {
    pub config: tokio_postgres::Config,
    pub tls: tls::MakeTls,
}

impl PgConfig {
    /// A new connection (TLS as configured).
    ///
    /// # Errors
    /// The database cannot be reached, refuses, or its certificate is not trusted.
    pub async fn connect(
        &self,
    ) -> Result<(Client, tokio_postgres::Connection<Socket, tls::PgTlsStream>), tokio_postgres::Error>
    {
        self.config.connect(self.tls.clone()).await
    }
}

/// A runtime dropped without waiting for its tasks (a runtime must not be dropped in
/// an asynchronous context otherwise).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The connection to the database, on a runtime of its own; reconnected when lost.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

struct DbInner {
    rt: Runtime,
    config: PgConfig,
    /// The pool: each slot a connection, made when first used, made again when lost.
    clients: Vec<tokio::sync::Mutex<Option<Arc<Client>>>>,
    next: std::sync::atomic::AtomicUsize,
    /// The last connection error (shown when writes fail).
    last_error: Mutex<Option<String>>,
}

/// A database error as an I/O error, with its causes (the client library's own text
/// is only the kind: "db error", "error performing TLS handshake").
pub fn io_err(e: tokio_postgres::Error) -> io::Error {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    io::Error::other(text)
}

impl Db {
    /// A handle; nothing is connected until first used.
    ///
    /// # Errors
    /// The settings are not valid, or the runtime cannot start.
    pub fn new(settings: &DbSettings) -> io::Result<Self> {
        let config = settings.client_config()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cssmtp-db")
            .enable_all()
            .build()?;
        Ok(Self {
            inner: Arc::new(DbInner {
                rt: Runtime(Some(rt)),
                config,
                clients: (0..settings.pool.max(1))
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect(),
                next: std::sync::atomic::AtomicUsize::new(0),
                last_error: Mutex::new(None),
            }),
        })
    }

    /// The client's settings (for a connection of its own: a transaction).
    pub fn config(&self) -> PgConfig {
        self.inner.config.clone()
    }

    fn handle(&self) -> io::Result<tokio::runtime::Handle> {
        (self.inner.rt.0.as_ref())
            .map(|rt| rt.handle().clone())
            .ok_or_else(|| io::Error::other("the database runtime has ended"))
    }

    /// The connected client (connecting, or connecting again, when needed).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn client(&self) -> io::Result<Arc<Client>> {
        let slots = &self.inner.clients;
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % slots.len().max(1);
        let Some(slot) = slots.get(i) else {
            return Err(io::Error::other("no connection slot"));
        };
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref()
            && !c.is_closed()
        {
            return Ok(Arc::clone(c));
        }
        *guard = None;
        let handle = self.handle()?;
        let config = self.inner.config.clone();
        let connected = handle
            .spawn(async move {
                let (client, conn) = config.connect().await?;
                tokio::spawn(conn);
                Ok::<_, tokio_postgres::Error>(client)
            })
            .await
            .map_err(io::Error::other)?;
        match connected {
            Ok(client) => {
                let client = Arc::new(client);
                *guard = Some(Arc::clone(&client));
                Ok(client)
            }
            Err(e) => {
                let e = io_err(e);
                if let Ok(mut last) = self.inner.last_error.lock() {
                    *last = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Forgets the connection (a statement timed out on it): the next use connects
    /// again.
    pub async fn reset(&self) {
        for slot in &self.inner.clients {
            *slot.lock().await = None;
        }
    }

    /// `work` within [`STATEMENT_TIMEOUT`]; past it, the connection is dropped (a
    /// database behind a network cut never answers) and the statement failed.
    ///
    /// # Errors
    /// `work`'s, or [`io::ErrorKind::TimedOut`].
    pub async fn timed<T>(&self, work: impl Future<Output = io::Result<T>>) -> io::Result<T> {
        match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
            Ok(result) => result,
            Err(_) => {
                self.reset().await;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the spool database did not answer within {} seconds",
                        STATEMENT_TIMEOUT.as_secs()
                    ),
                ))
            }
        }
    }

    /// Runs `work` on the database's runtime and waits for it.
    ///
    /// # Errors
    /// The runtime has ended.
    pub async fn run<T, F>(&self, work: F) -> io::Result<T>
    where
        F: Future<Output = io::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.handle()?.spawn(work).await.map_err(io::Error::other)?
    }

    /// Runs `work` on the database's runtime and blocks this thread until it is done
    /// (off the caller's runtime worker first, when it has several).
    ///
    /// # Errors
    /// `work`'s, or the runtime has ended.
    pub fn block<T, F>(&self, work: F) -> io::Result<T>
    where
        F: Future<Output = io::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle()?.spawn(async move {
            let _ = tx.send(work.await);
        });
        let wait = move || {
            rx.recv()
                .unwrap_or_else(|_| Err(io::Error::other("the database runtime has ended")))
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Spawns `work` on the database's runtime (a timer of the backend).
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Ok(h) = self.handle() {
            h.spawn(work);
        }
    }
}

/// A connection of its own (a transaction needs one), driven on the calling runtime
/// until the client is dropped; await the handle after dropping the client.
///
/// # Errors
/// The database cannot be reached.
pub async fn connect(config: &PgConfig) -> io::Result<(Client, tokio::task::JoinHandle<()>)> {
    let (client, conn) = config.connect().await.map_err(io_err)?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, conn))
}

/// How long a statement of the queue's may take before the database is taken for
/// unreachable.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an unreachable database is tried again.
pub const PROBE: Duration = Duration::from_secs(1);

/// Whether the database can be written now: false from a failed write (or listing)
/// until a probe gets through (every [`PROBE`]). Intake takes no file and no final "."
/// goes out meanwhile.
pub struct Health {
    db: Db,
    writable: watch::Sender<bool>,
    probing: AtomicBool,
}

impl Health {
    pub fn new(db: Db) -> Arc<Self> {
        let (writable, _) = watch::channel(true);
        Arc::new(Self {
            db,
            writable,
            probing: AtomicBool::new(false),
        })
    }

    pub fn is_writable(&self) -> bool {
        *self.writable.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.writable.subscribe()
    }

    /// The database cannot be used: not writable until a probe gets through (said
    /// once, CSM2602W; back, CSM2606I).
    pub fn unreachable(self: &Arc<Self>, e: &io::Error) {
        if self.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        self.writable.send_replace(false);
        tracing::warn!(
            "CSM2602W The spool database cannot be used ({e}); no new spool file is taken and no final \".\" is sent until it can (tried every {} s)",
            PROBE.as_secs()
        );
        let health = Arc::clone(self);
        self.db.spawn(async move {
            loop {
                tokio::time::sleep(PROBE).await;
                let ok = match health.db.client().await {
                    Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    health.probing.store(false, Ordering::SeqCst);
                    health.writable.send_replace(true);
                    tracing::info!("CSM2606I The spool database can be used again; intake resumes");
                    return;
                }
            }
        });
    }
}
