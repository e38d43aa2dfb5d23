//! `cssmtp run` on the shared spool: the database reached and its schema made current
//! at start (waiting, CSM2609E, while it cannot be reached; a schema newer than this
//! binary stops the start), then intake from it, woken by the database's NOTIFY when a
//! file arrives (and every few seconds in any case), and the leases this instance
//! holds given up at a clean stop so that another instance takes the files at once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::claim::PgClaim;
use super::source::{Candidate, Lease, Leases, PgSource};
use super::store::PgStore;
use super::{Db, DbSettings, Health, io_err};
use crate::delivery::router::Router;
use crate::queue::TaskShared;
use crate::spool::Mode;
use crate::spool::claim::Keeping;
use crate::spool::intake::{self, Spool};
use crate::spool::report::FileReport;
use crate::storage::{SpoolClaim, StateStore};

/// How often an unreachable database is tried at start.
const START_RETRY: Duration = Duration::from_secs(5);

/// The shared spool, connected.
pub struct SharedSpool {
    db: Db,
    health: Arc<Health>,
    leases: Leases,
    settings: DbSettings,
    store: Arc<PgStore>,
}

/// Connects and makes the schema current, waiting while the database cannot be
/// reached; `None` when `stop` came first.
///
/// # Errors
/// The settings are not valid, or the schema is newer than this binary knows.
pub async fn connect(
    settings: &DbSettings,
    writer: &str,
    stop: &CancellationToken,
) -> anyhow::Result<Option<SharedSpool>> {
    let db = Db::new(settings)?;
    let mut said = false;
    let found = loop {
        let tried = async {
            let client = db.client().await?;
            super::schema::migrate(&client).await
        }
        .await;
        match tried {
            Ok(found) => break found,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                tracing::error!("CSM2609E The spool database cannot be used: {e}");
                return Err(e.into());
            }
            Err(e) => {
                if !said {
                    tracing::error!(
                        "CSM2609E The spool database cannot be used ({e}); tried again every {} seconds",
                        START_RETRY.as_secs()
                    );
                    said = true;
                }
                tokio::select! {
                    () = stop.cancelled() => return Ok(None),
                    () = tokio::time::sleep(START_RETRY) => {}
                }
            }
        }
    };
    // One instance per name: leases are held by name.
    let (lock_db, config, writer2, instance) = (
        db.clone(),
        settings.client_config()?,
        writer.to_owned(),
        settings.instance.clone(),
    );
    let locked = db
        .run(async move {
            let (client, conn) = config.connect().await.map_err(io_err)?;
            let conn = tokio::spawn(conn);
            let row = client
                .query_one(LOCK, &[&writer2, &instance])
                .await
                .map_err(io_err)?;
            let locked: bool = row.get(0);
            if locked {
                keep_instance_lock(&lock_db, config, client, conn, writer2, instance);
            }
            Ok(locked)
        })
        .await?;
    if !locked {
        let e = format!(
            "another instance named {} already serves writer {writer} on the spool database: each instance needs a name of its own (SpoolDatabaseInstance)",
            settings.instance
        );
        tracing::error!("CSM2609E The spool database cannot be used: {e}");
        anyhow::bail!(e);
    }
    tracing::info!(
        "CSM2600I The spool is kept in the database (schema version {}{}); this instance is {} in leases of {} seconds",
        super::schema::VERSION,
        match found {
            0 => ", created now".to_owned(),
            v if v < super::schema::VERSION => format!(", migrated from version {v}"),
            _ => String::new(),
        },
        settings.instance,
        settings.lease.as_secs()
    );
    let health = Health::new(db.clone());
    let leases = Leases::default();
    leases.renew_every(&db, settings.instance.clone(), settings.lease);
    let store = Arc::new(PgStore::new(
        db.clone(),
        leases.clone(),
        Arc::clone(&health),
    ));
    Ok(Some(SharedSpool {
        db,
        health,
        leases,
        settings: settings.clone(),
        store,
    }))
}

impl SharedSpool {
    /// The cluster, for DISPLAY.
    pub fn cluster(&self) -> Arc<dyn super::cluster::ClusterSource> {
        Arc::new(super::cluster::PgCluster {
            db: self.db.clone(),
            instance: self.settings.instance.clone(),
        })
    }

    /// Parked mail of `writer` (extended retry), shared by the cluster; copies read
    /// back into unlinked temporary files in `scratch`.
    pub fn parked(
        &self,
        writer: &str,
        interval: Duration,
        scratch: std::path::PathBuf,
        host: String,
    ) -> Arc<dyn crate::storage::parked::ParkedStore> {
        Arc::new(super::parked::PgParked::new(
            self.db.clone(),
            writer.to_owned(),
            self.settings.instance.clone(),
            self.settings.lease,
            interval,
            scratch,
            host,
        ))
    }

    /// The queue's state store.
    pub fn store(&self) -> Arc<dyn StateStore> {
        Arc::clone(&self.store) as Arc<dyn StateStore>
    }

    /// Runs intake from the database until stopped (or drained); then gives up the
    /// leases this instance holds.
    ///
    /// # Errors
    /// As [`intake::run_from`].
    pub async fn intake(
        self,
        shared: Arc<TaskShared>,
        router: Arc<Router>,
        mode: Mode,
        keep_reports: bool,
    ) -> io::Result<Vec<FileReport>> {
        let writer = shared.config.current().ext_wrt_name.clone();
        let beating = CancellationToken::new();
        super::cluster::heartbeat(
            &self.db,
            writer.clone(),
            self.settings.instance.clone(),
            self.settings.lease,
            beating.clone(),
        );
        let source = PgSource::new(
            self.db.clone(),
            Arc::clone(&self.health),
            writer.clone(),
            self.settings.instance.clone(),
            self.settings.lease,
            self.leases.clone(),
            shared.layout.active.clone(),
        );
        let (wake_tx, wake_rx) = mpsc::channel(1);
        listen(&self.db, &self.settings, writer.clone(), wake_tx);
        let claiming = Arc::clone(&shared);
        let (db, leases, writer2, owner) = (
            self.db.clone(),
            self.leases.clone(),
            writer.clone(),
            self.settings.instance.clone(),
        );
        let spool = Spool {
            source,
            shown: format!("the spool database (writer {writer})"),
            claim: Box::new(move |lease: Lease| {
                let config = claiming.config.current();
                let keeping = Keeping {
                    host: claiming.host_name.clone(),
                    mail_directory: config.mail_directory(),
                    extended: claiming.extended.clone(),
                };
                let interval = (config.extended_retry.as_ref())
                    .map_or(Duration::from_secs(30 * 60), |e| e.interval);
                Arc::new(PgClaim::new(
                    db.clone(),
                    writer2.clone(),
                    lease,
                    leases.clone(),
                    keeping,
                    super::claim::Places {
                        owner: owner.clone(),
                        interval,
                        scratch: claiming.layout.active.clone(),
                        hold_dir: claiming.layout.hold.clone(),
                    },
                )) as Arc<dyn SpoolClaim>
            }),
            name: |c: &Candidate| crate::escape::name(std::ffi::OsStr::new(&c.name)),
            wake: wake_rx,
        };
        let result = intake::run_from(shared, router, mode, keep_reports, spool).await;
        self.give_up_leases(&writer).await;
        beating.cancel();
        super::cluster::forget(&self.db, writer, self.settings.instance.clone()).await;
        result
    }

    /// Every spool task has ended: the files this instance still holds are left for
    /// any instance to take at once (their records say where they stopped).
    async fn give_up_leases(&self, writer: &str) {
        let (db, writer, owner) = (
            self.db.clone(),
            writer.to_owned(),
            self.settings.instance.clone(),
        );
        let _ = self
            .db
            .run(async move {
                let client = db.client().await?;
                client
                    .execute(
                        "UPDATE cssmtp_spool_file SET lease_until = now()
                         WHERE writer = $1 AND lease_owner = $2 AND state = 'claimed'",
                        &[&writer, &owner],
                    )
                    .await
                    .map_err(io_err)
            })
            .await;
    }
}

/// The advisory lock of an instance's name (per writer), held by a session.
const LOCK: &str = "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))";

/// Holds the instance's lock for the life of the process: on a connection of its own,
/// taken again when the connection was lost (CSM2611E when another instance of the
/// same name took it meanwhile).
fn keep_instance_lock(
    db: &Db,
    config: super::PgConfig,
    client: Client,
    conn: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    writer: String,
    instance: String,
) {
    db.spawn(async move {
        let _ = conn.await;
        drop(client);
        let mut said = false;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Ok((client, conn)) = config.connect().await else {
                continue;
            };
            let held = tokio::spawn(conn);
            match client.query_one(LOCK, &[&writer, &instance]).await {
                Ok(row) if row.get::<_, bool>(0) => {
                    said = false;
                    let _ = held.await;
                }
                Ok(_) if !said => {
                    tracing::error!(
                        "CSM2611E Another instance named {instance} serves writer {writer} on the spool database: each instance needs a name of its own (SpoolDatabaseInstance); their leases are confused until one stops"
                    );
                    said = true;
                }
                _ => {}
            }
        }
    });
}

/// Listens for the NOTIFY of new files of `writer` (on a connection of its own,
/// connected again when lost) and wakes intake, until intake ends.
fn listen(db: &Db, settings: &DbSettings, writer: String, wake: mpsc::Sender<()>) {
    let Ok(config) = settings.client_config() else {
        return;
    };
    db.spawn(async move {
        while !wake.is_closed() {
            if let Ok((client, mut conn)) = config.connect().await {
                let listening = async {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(n)))
                                if n.payload() == writer =>
                            {
                                let _ = wake.try_send(());
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => return,
                        }
                    }
                };
                let subscribe = async {
                    // Files that came while not listening are found by the listing
                    // that follows a wake.
                    if client.batch_execute("LISTEN cssmtp_spool").await.is_ok() {
                        let _ = wake.try_send(());
                    }
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    () = listening => {}
                    () = subscribe => {}
                    () = wake.closed() => return,
                }
            }
            tokio::select! {
                () = wake.closed() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}
