//! Spool file names: how a job name and job ID travel with a file.
//!
//! `cssmtp submit` names files `<JOBNAME>.<JOBID>.<unique>`, so the job that wrote the
//! mail can be recovered from the name, as CSSMTP reads it from the JES spool (for the
//! `Received:` and `Message-ID:` headers, logs and reports). A file dropped under any
//! other name still works: its job name is the part before the first dot, and its job ID
//! the next part, or `NOJOBID`.

/// The job a spool file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    /// The file name in the spool.
    pub file_name: String,
    pub job_name: String,
    pub job_id: String,
}

/// How intake ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run until stopped.
    Daemon,
    /// Stop once the spool is empty and every file is final.
    Drain,
}

/// Letters kept in job names and IDs; anything else becomes `_` so the values are safe
/// in headers and logs.
fn clean(part: &str, max: usize) -> String {
    part.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "$#@_-".contains(c) {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl JobIdentity {
    pub fn from_file_name(file_name: &str) -> Self {
        let mut parts = file_name.split('.');
        let job_name = parts
            .next()
            .filter(|p| !p.is_empty())
            .map_or_else(|| "NOJOB".into(), |p| clean(p, 32));
        let job_id = parts
            .next()
            .filter(|p| !p.is_empty())
            .map_or_else(|| "NOJOBID".into(), |p| clean(p, 32));
        Self {
            file_name: file_name.to_owned(),
            job_name,
            job_id,
        }
    }
}

/// A spool file name for a submitted job: `<JOBNAME>.<JOBID>.<unique>`.
pub fn spool_file_name(job_name: &str, job_id: &str, unique: &str) -> String {
    format!("{}.{}.{unique}", clean(job_name, 32), clean(job_id, 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = spool_file_name("payroll", "J0012345", "20261128T220000-1");
        assert_eq!(name, "PAYROLL.J0012345.20261128T220000-1");
        let id = JobIdentity::from_file_name(&name);
        assert_eq!(
            (id.job_name.as_str(), id.job_id.as_str()),
            ("PAYROLL", "J0012345")
        );
        let odd = JobIdentity::from_file_name("report\nx");
        assert_eq!(odd.job_name, "REPORT_X");
        assert_eq!(odd.job_id, "NOJOBID");
    }
}
