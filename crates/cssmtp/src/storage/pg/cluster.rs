//! The cluster as DISPLAY SPOOLSTATUS shows it: the instances alive (each renews a row
//! of `cssmtp_instance` every third of its lease), what each holds, and each writer's
//! queue depth and oldest waiting file.

use std::io;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Db, io_err};
use crate::storage::Pending;

/// The shared spool seen from one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// The instance answering.
    pub this: String,
    pub instances: Vec<Instance>,
    pub writers: Vec<Writer>,
}

/// An instance alive (seen within its lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub name: String,
    pub writer: String,
    /// Seconds since the Unix epoch.
    pub started: i64,
    pub seen: i64,
    /// Spool files it holds (leases not expired).
    pub files_held: i64,
}

/// A writer's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Writer {
    pub writer: String,
    pub waiting: i64,
    pub claimed: i64,
    pub held: i64,
    /// The oldest waiting file's submission, seconds since the Unix epoch.
    pub oldest_waiting: Option<i64>,
}

/// What DISPLAY asks the shared spool.
pub trait ClusterSource: Send + Sync {
    fn snapshot(&self) -> Pending<'_, io::Result<Cluster>>;

    /// This instance's name.
    fn instance(&self) -> &str;
}

/// The cluster of one database.
pub struct PgCluster {
    pub db: Db,
    pub instance: String,
}

impl ClusterSource for PgCluster {
    fn instance(&self) -> &str {
        &self.instance
    }

    fn snapshot(&self) -> Pending<'_, io::Result<Cluster>> {
        let (db, this) = (self.db.clone(), self.instance.clone());
        Box::pin(
            self.db
                .run(async move { db.timed(snapshot(&db, this)).await }),
        )
    }
}

async fn snapshot(db: &Db, this: String) -> io::Result<Cluster> {
    let client = db.client().await?;
    let instances = client
        .query(
            "SELECT i.name, i.writer, extract(epoch FROM i.started)::bigint,
                            extract(epoch FROM i.seen)::bigint,
                            (SELECT count(*) FROM cssmtp_spool_file f
                              WHERE f.writer = i.writer AND f.lease_owner = i.name
                                AND f.state = 'claimed' AND f.lease_until >= now())
                     FROM cssmtp_instance i WHERE i.alive_until >= now()
                     ORDER BY i.writer, i.name",
            &[],
        )
        .await
        .map_err(io_err)?
        .iter()
        .map(|r| Instance {
            name: r.get(0),
            writer: r.get(1),
            started: r.get(2),
            seen: r.get(3),
            files_held: r.get(4),
        })
        .collect();
    let writers = client
                .query(
                    "SELECT writer,
                            count(*) FILTER (WHERE state = 'waiting' AND ready),
                            count(*) FILTER (WHERE state = 'claimed'),
                            count(*) FILTER (WHERE state = 'held'),
                            extract(epoch FROM min(submitted) FILTER (WHERE state = 'waiting' AND ready))::bigint
                     FROM cssmtp_spool_file GROUP BY writer ORDER BY writer",
                    &[],
                )
                .await
                .map_err(io_err)?
                .iter()
                .map(|r| Writer {
                    writer: r.get(0),
                    waiting: r.get(1),
                    claimed: r.get(2),
                    held: r.get(3),
                    oldest_waiting: r.get(4),
                })
                .collect();
    Ok(Cluster {
        this,
        instances,
        writers,
    })
}

/// How often the background refresher reads the cluster for the metrics.
pub const VIEW_REFRESH: Duration = Duration::from_secs(3);

/// The last cluster view read by [`refresher`], for the metrics: a scrape reads it
/// and never waits on the database; when the database is away the view stays as it
/// was and its age grows.
#[derive(Debug)]
pub struct ClusterView {
    since: SystemTime,
    last: std::sync::Mutex<Option<(Cluster, SystemTime)>>,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self {
            since: SystemTime::now(),
            last: std::sync::Mutex::new(None),
        }
    }
}

impl ClusterView {
    /// The last view read and when it was read, if any yet.
    pub fn last(&self) -> Option<(Cluster, SystemTime)> {
        self.last
            .lock()
            .map_or_else(|p| p.into_inner().clone(), |g| g.clone())
    }

    /// Records a view just read.
    pub fn set(&self, cluster: Cluster, at: SystemTime) {
        let mut g = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = Some((cluster, at));
    }

    /// Seconds since the last view was read (since the refresher started, when none
    /// has been read yet).
    pub fn age(&self, now: SystemTime) -> u64 {
        let at = self.last().map_or(self.since, |(_, at)| at);
        now.duration_since(at).map_or(0, |d| d.as_secs())
    }
}

/// Reads the cluster into `view` every `every` until `until` is cancelled; a failed
/// read leaves the last view in place.
pub fn refresher(
    source: std::sync::Arc<dyn ClusterSource>,
    view: std::sync::Arc<ClusterView>,
    every: Duration,
    until: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let read = tokio::select! {
                () = until.cancelled() => return,
                r = source.snapshot() => r,
            };
            if let Ok(cluster) = read {
                view.set(cluster, SystemTime::now());
            }
            tokio::select! {
                () = until.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    })
}

/// Keeps this instance's row in `cssmtp_instance` (seen every third of `lease`,
/// alive until a lease later), until `until` is cancelled; the row goes at a clean
/// stop ([`forget`]).
pub fn heartbeat(
    db: &Db,
    writer: String,
    instance: String,
    lease: Duration,
    until: tokio_util::sync::CancellationToken,
) {
    let started = SystemTime::now();
    let db2 = db.clone();
    db.spawn(async move {
        let every = (lease / 3).max(Duration::from_millis(100));
        loop {
            if let Ok(client) = db2.client().await {
                let _ = client
                    .execute(
                        "INSERT INTO cssmtp_instance (writer, name, started, seen, alive_until)
                         VALUES ($1, $2, $3, now(), now() + make_interval(secs => $4))
                         ON CONFLICT (writer, name) DO UPDATE
                         SET started = $3, seen = now(), alive_until = now() + make_interval(secs => $4)",
                        &[&writer, &instance, &started, &lease.as_secs_f64()],
                    )
                    .await;
            }
            tokio::select! {
                () = until.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    });
}

/// This instance is stopping: its row goes.
pub async fn forget(db: &Db, writer: String, instance: String) {
    let db2 = db.clone();
    let _ = db
        .run(async move {
            let client = db2.client().await?;
            client
                .execute(
                    "DELETE FROM cssmtp_instance WHERE writer = $1 AND name = $2",
                    &[&writer, &instance],
                )
                .await
                .map_err(io_err)
        })
        .await;
}
