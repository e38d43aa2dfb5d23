//! What a scrape reads from the file system, on a blocking thread (a directory listing
//! and statvfs can be slow, or hang on a file system that does not answer): the spool's
//! backlog (files waiting in the writer directory for intake, and the age of the
//! oldest) and how full the file systems of the spool, dead-letter and mail
//! directories are. Exported as `cssmtp_spool_backlog_files`,
//! `cssmtp_spool_backlog_oldest_seconds` and `cssmtp_filesystem_used_ratio`, and shown
//! on the status page.

use std::path::PathBuf;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

/// Where the spool is, for the scrape.
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// The writer name (ExtWrtName), for the status page's title.
    pub writer: String,
    /// The writer directory, where producers drop files.
    pub incoming: PathBuf,
    /// The directories whose file system is watched, each with its label.
    pub directories: Vec<(&'static str, PathBuf)>,
}

/// At most this many entries of the writer directory are looked at per scrape (a
/// backlog larger than that is reported as this many).
pub const BACKLOG_SCAN_CAP: u64 = 100_000;

/// What one scrape saw.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Files waiting in the writer directory (complete ones: not `.`-names nor
    /// `.tmp`).
    pub backlog_files: u64,
    /// Age of the oldest of them (by modification time), in seconds; 0 when none.
    pub oldest_seconds: u64,
    /// Used fraction of each watched directory's file system (those that exist).
    pub used: Vec<(&'static str, f64)>,
}

/// Looks (blocking).
pub fn look(places: &Places) -> View {
    let now = SystemTime::now();
    let mut view = View::default();
    if let Ok(entries) = std::fs::read_dir(&places.incoming) {
        for entry in entries
            .flatten()
            .take(usize::try_from(BACKLOG_SCAN_CAP).unwrap_or(usize::MAX))
        {
            // The spool's own rule for a file a producer has finished writing.
            if !crate::spool::layout::is_ready(&entry.file_name()) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            view.backlog_files += 1;
            if let Ok(age) = meta.modified().and_then(|m| {
                now.duration_since(m)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }) {
                view.oldest_seconds = view.oldest_seconds.max(age.as_secs());
            }
        }
    }
    for (label, dir) in &places.directories {
        if let Some(used) = used_ratio(dir) {
            view.used.push((label, used));
        }
    }
    view
}

/// The used fraction of the file system holding `dir` (blocks in use for non-root
/// users, as `df` counts).
#[allow(
    clippy::useless_conversion,
    clippy::cast_precision_loss,
    reason = "the statvfs field types vary by platform; a ratio needs no precision"
)]
fn used_ratio(dir: &std::path::Path) -> Option<f64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    let total = u64::from(stat.blocks());
    let available = u64::from(stat.blocks_available());
    let free = u64::from(stat.blocks_free());
    let used = total.checked_sub(free)?;
    let usable = used.checked_add(available)?;
    (usable > 0).then(|| used as f64 / usable as f64)
}

impl Collector for View {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |e: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
            let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
        };
        gauge(
            &mut e,
            "cssmtp_spool_backlog_files",
            "Spool files waiting in the writer directory for intake.",
            self.backlog_files,
        )?;
        gauge(
            &mut e,
            "cssmtp_spool_backlog_oldest_seconds",
            "Age of the oldest spool file waiting for intake (0 when none).",
            self.oldest_seconds,
        )?;
        let mut family = e.encode_descriptor(
            "cssmtp_filesystem_used_ratio",
            "Used fraction of the file system of the spool, dead-letter and mail directories.",
            None,
            MetricType::Gauge,
        )?;
        for (label, used) in &self.used {
            ConstGauge::new(*used).encode(family.encode_family(&[("directory", *label)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_counts_complete_files_and_the_oldest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for name in ["A.J1.x", "B.J2.y", ".C.tmp", "D.tmp"] {
            std::fs::write(dir.path().join(name), b"x").unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::create_dir(dir.path().join("active")).unwrap_or_else(|e| panic!("{e}"));
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("A.J1.x"))
            .and_then(|f| f.set_modified(old))
            .unwrap_or_else(|e| panic!("{e}"));
        let view = look(&Places {
            writer: "W".into(),
            incoming: dir.path().to_path_buf(),
            directories: vec![("spool", dir.path().to_path_buf())],
        });
        assert_eq!(view.backlog_files, 2);
        assert!((3600..3700).contains(&view.oldest_seconds), "{view:?}");
        assert_eq!(view.used.len(), 1);
        assert!(view.used.iter().all(|(_, u)| (0.0..=1.0).contains(u)));
    }
}
