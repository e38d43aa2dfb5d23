//! The shared spool's cluster (`SpoolDatabase`) in the metrics, from the view the
//! background refresher last read ([`ClusterView`]): a scrape never waits on the
//! database, and when the database is away the gauges keep their last values while
//! `cssmtp_cluster_view_age_seconds` grows. Labels: the writer and the instance
//! names of the cluster (configured names, few).

use std::time::SystemTime;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::storage::pg::cluster::ClusterView;

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
    let mut family = e.encode_descriptor(
        "cssmtp_cluster_queue_depth",
        "Spool files waiting in the spool database for an instance, per writer.",
        None,
        MetricType::Gauge,
    )?;
    for w in &cluster.writers {
        ConstGauge::new(w.waiting)
            .encode(family.encode_family(&[("writer", w.writer.as_str())])?)?;
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
    for w in &cluster.writers {
        let age = w
            .oldest_waiting
            .map_or(0, |t| now_epoch.saturating_sub(t).max(0));
        ConstGauge::new(age).encode(family.encode_family(&[("writer", w.writer.as_str())])?)?;
    }
    Ok(())
}
