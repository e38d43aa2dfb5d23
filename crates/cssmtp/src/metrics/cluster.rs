//! The shared spool's cluster (`SpoolDatabase`) in the metrics, from the view the
//! background refresher last read ([`ClusterView`]): a scrape never waits on the
//! database, and when the database is away the gauges keep their last values while
//! `cssmtp_cluster_view_age_seconds` grows. Labels: the writer and the instance
//! names of the cluster (configured names, few).

use std::collections::BTreeSet;
use std::time::SystemTime;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::storage::pg::cluster::{Cluster, ClusterView};

/// The label of the queues of writers no instance alive serves.
pub const OTHER_WRITERS: &str = "(other)";

/// Each writer's queue (name, files waiting, oldest waiting): the writers an instance
/// alive serves each under its name, the others together under [`OTHER_WRITERS`] (a
/// plain-SQL producer may name any writer: the labels stay bounded by the instances).
fn queues(cluster: &Cluster) -> Vec<(&str, i64, Option<i64>)> {
    let served: BTreeSet<&str> = cluster
        .instances
        .iter()
        .map(|i| i.writer.as_str())
        .collect();
    let mut queues: Vec<(&str, i64, Option<i64>)> = Vec::new();
    let mut other: Option<(i64, Option<i64>)> = None;
    for w in &cluster.writers {
        if served.contains(w.writer.as_str()) {
            queues.push((w.writer.as_str(), w.waiting, w.oldest_waiting));
        } else {
            let (waiting, oldest) = other.get_or_insert((0, None));
            *waiting = waiting.saturating_add(w.waiting);
            *oldest = match (*oldest, w.oldest_waiting) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    if let Some((waiting, oldest)) = other {
        queues.push((OTHER_WRITERS, waiting, oldest));
    }
    queues
}

/// Writes the cluster gauges of `view` as seen at `now`.
///
/// # Errors
/// The encoder's.
pub fn encode(
    view: &ClusterView,
    now: SystemTime,
    e: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let age = ConstGauge::new(i64::try_from(view.age(now)).unwrap_or(i64::MAX));
    age.encode(e.encode_descriptor(
        "cssmtp_cluster_view_age_seconds",
        "Seconds since the cluster gauges were last read from the spool database.",
        None,
        MetricType::Gauge,
    )?)?;
    let Some((cluster, _)) = view.last() else {
        return Ok(());
    };
    ConstGauge::new(i64::try_from(cluster.instances.len()).unwrap_or(i64::MAX)).encode(
        e.encode_descriptor(
            "cssmtp_cluster_instances_alive",
            "Instances sharing the spool database seen alive (within their lease).",
            None,
            MetricType::Gauge,
        )?,
    )?;
    let mut family = e.encode_descriptor(
        "cssmtp_cluster_files_held",
        "Spool files each instance alive holds (claimed, lease not expired).",
        None,
        MetricType::Gauge,
    )?;
    for i in &cluster.instances {
        ConstGauge::new(i.files_held).encode(
            family
                .encode_family(&[("writer", i.writer.as_str()), ("instance", i.name.as_str())])?,
        )?;
    }
    let queues = queues(&cluster);
    let mut family = e.encode_descriptor(
        "cssmtp_cluster_queue_depth",
        "Spool files waiting in the spool database for an instance, per writer.",
        None,
        MetricType::Gauge,
    )?;
    for (writer, waiting, _) in &queues {
        ConstGauge::new(*waiting).encode(family.encode_family(&[("writer", *writer)])?)?;
    }
    let now_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut family = e.encode_descriptor(
        "cssmtp_cluster_oldest_waiting_seconds",
        "Age of the oldest spool file waiting in the spool database, per writer (0 when none).",
        None,
        MetricType::Gauge,
    )?;
    for (writer, _, oldest) in &queues {
        let age = oldest.map_or(0, |t| now_epoch.saturating_sub(t).max(0));
        ConstGauge::new(age).encode(family.encode_family(&[("writer", *writer)])?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;
    use tokio::sync::mpsc;

    use super::*;
    use crate::storage::Pending;
    use crate::storage::pg::cluster::{ClusterSource, Instance, Writer, refresher};

    /// Answers its queue of results in turn (failing once it is empty); says on `calls`
    /// each time it is asked.
    struct Scripted {
        answers: Mutex<VecDeque<io::Result<Cluster>>>,
        calls: mpsc::UnboundedSender<()>,
    }

    impl ClusterSource for Scripted {
        fn snapshot(&self) -> Pending<'_, io::Result<Cluster>> {
            let _ = self.calls.send(());
            let next = self
                .answers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front()
                .unwrap_or_else(|| Err(io::Error::other("the database is away")));
            Box::pin(async move { next })
        }

        fn instance(&self) -> &str {
            "node-a"
        }
    }

    #[derive(Debug)]
    struct At(Arc<ClusterView>, SystemTime);

    impl Collector for At {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode(&self.0, self.1, &mut e)
        }
    }

    fn text(view: &Arc<ClusterView>, at: SystemTime) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(At(Arc::clone(view), at)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .unwrap_or_else(|e| panic!("{e}"));
        text
    }

    fn epoch(t: SystemTime) -> i64 {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
    }

    #[tokio::test(start_paused = true)]
    async fn the_gauges_keep_the_last_view_and_say_its_age_when_the_database_is_away() {
        let now = SystemTime::now();
        let cluster = Cluster {
            this: "node-a".into(),
            instances: ["node-a", "node-b"]
                .iter()
                .zip([1, 0])
                .map(|(name, held)| Instance {
                    name: (*name).into(),
                    writer: "W".into(),
                    started: epoch(now),
                    seen: epoch(now),
                    files_held: held,
                })
                .collect(),
            writers: [("W", 3, 100), ("X1", 2, 500), ("X2", 4, 50)]
                .iter()
                .map(|(writer, waiting, age)| Writer {
                    writer: (*writer).into(),
                    waiting: *waiting,
                    claimed: 1,
                    held: 0,
                    oldest_waiting: Some(epoch(now) - age),
                })
                .collect(),
        };
        let (calls, mut called) = mpsc::unbounded_channel();
        let source = Arc::new(Scripted {
            answers: Mutex::new(VecDeque::from([Ok(cluster.clone())])),
            calls,
        });
        let view = Arc::new(ClusterView::default());
        // Nothing read yet: only the age.
        let before = text(&view, now);
        assert!(
            before.contains("cssmtp_cluster_view_age_seconds 0"),
            "{before}"
        );
        assert!(!before.contains("cssmtp_cluster_queue_depth"), "{before}");
        let stop = tokio_util::sync::CancellationToken::new();
        let task = refresher(
            source,
            Arc::clone(&view),
            Duration::from_secs(3),
            stop.clone(),
        );
        // The first read (a view), the second (the database away), a third asked: the
        // failed read has been handled.
        for _ in 0..3 {
            called
                .recv()
                .await
                .unwrap_or_else(|| panic!("refresher ended"));
        }
        assert_eq!(view.last().map(|(c, _)| c), Some(cluster));
        let later = text(&view, now + Duration::from_secs(60));
        for line in [
            "cssmtp_cluster_instances_alive 2",
            "cssmtp_cluster_files_held{writer=\"W\",instance=\"node-a\"} 1",
            "cssmtp_cluster_files_held{writer=\"W\",instance=\"node-b\"} 0",
            "cssmtp_cluster_queue_depth{writer=\"W\"} 3",
            "cssmtp_cluster_oldest_waiting_seconds{writer=\"W\"} 160",
            // Writers no instance serves (named by plain-SQL producers): together.
            "cssmtp_cluster_queue_depth{writer=\"(other)\"} 6",
            "cssmtp_cluster_oldest_waiting_seconds{writer=\"(other)\"} 560",
        ] {
            assert!(later.contains(line), "{line} in {later}");
        }
        assert!(!later.contains("X1"), "{later}");
        let age: u64 = later
            .lines()
            .find_map(|l| l.strip_prefix("cssmtp_cluster_view_age_seconds "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{later}"));
        // Read just after `now`: about 60 seconds old.
        assert!((59..70).contains(&age), "{later}");
        stop.cancel();
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }
}
