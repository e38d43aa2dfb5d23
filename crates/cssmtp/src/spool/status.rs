//! What the spool tasks are doing, for DISPLAY SPOOLSTATUS and the metrics; and the
//! operator's hold on intake (SUSPEND, RESUME).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// SUSPEND and RESUME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suspend {
    /// Spool files are taken and mail is sent.
    Running,
    /// `SUSPEND,DELAY`: no new spool file is taken; those in progress are finished.
    Delay,
    /// `SUSPEND,IMMEDIATE`: no new spool file is taken, and no new mail is handed to a
    /// target (transactions in progress complete).
    Immediate,
}

/// One spool task, as the operator sees it. The task updates it as it goes.
#[derive(Debug)]
pub struct TaskStatus {
    pub tkid: u32,
    pub file: String,
    pub job_name: String,
    pub job_id: String,
    /// The owner of the spool file (escaped), once the file is open.
    pub owner: Mutex<String>,
    pub started: SystemTime,
    pub mails_read: AtomicU64,
    /// Mails not final yet (in delivery, waiting to retry, being returned).
    pub mails_pending: AtomicU64,
    /// Mails waiting in long retry.
    pub mails_retry: AtomicU64,
    pub rcpts_delivered: AtomicU64,
    pub rcpts_undeliverable: AtomicU64,
    pub rcpts_extended: AtomicU64,
    /// When the next long retry is due.
    pub next_retry: Mutex<Option<SystemTime>>,
    /// FLUSHRETRY,TKID=: ends the long retry of this task's mails now; the task
    /// answers how many mails it took out.
    pub flush: mpsc::UnboundedSender<oneshot::Sender<u64>>,
}

/// A copy of a [`TaskStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct TaskSnapshot {
    pub tkid: u32,
    pub file: String,
    pub job_name: String,
    pub job_id: String,
    /// The owner of the spool file ("" until known).
    pub owner: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub mails_read: u64,
    pub mails_pending: u64,
    pub mails_retry: u64,
    pub rcpts_delivered: u64,
    pub rcpts_undeliverable: u64,
    pub rcpts_extended: u64,
    /// Seconds since the Unix epoch.
    pub next_retry: Option<u64>,
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TaskStatus {
    pub fn snapshot(&self) -> TaskSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TaskSnapshot {
            tkid: self.tkid,
            file: self.file.clone(),
            job_name: self.job_name.clone(),
            job_id: self.job_id.clone(),
            owner: self.owner.lock().map(|o| o.clone()).unwrap_or_default(),
            started: epoch(self.started),
            mails_read: get(&self.mails_read),
            mails_pending: get(&self.mails_pending),
            mails_retry: get(&self.mails_retry),
            rcpts_delivered: get(&self.rcpts_delivered),
            rcpts_undeliverable: get(&self.rcpts_undeliverable),
            rcpts_extended: get(&self.rcpts_extended),
            next_retry: self.next_retry.lock().ok().and_then(|t| t.map(epoch)),
        }
    }
}

/// The spool tasks running now.
#[derive(Debug, Default)]
pub struct TaskRegistry {
    tasks: Mutex<BTreeMap<u32, Arc<TaskStatus>>>,
}

impl TaskRegistry {
    /// Registers a task; it is removed when the returned guard is dropped.
    pub fn register(self: &Arc<Self>, status: TaskStatus) -> Registered {
        let status = Arc::new(status);
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(status.tkid, Arc::clone(&status));
        }
        Registered {
            registry: Arc::clone(self),
            status,
        }
    }

    /// Every task, by TKID.
    pub fn all(&self) -> Vec<Arc<TaskStatus>> {
        self.tasks
            .lock()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One task.
    pub fn get(&self, tkid: u32) -> Option<Arc<TaskStatus>> {
        self.tasks.lock().ok().and_then(|t| t.get(&tkid).cloned())
    }

    /// Mails waiting in long retry, over all tasks.
    pub fn mails_in_retry(&self) -> u64 {
        self.all()
            .iter()
            .map(|t| t.mails_retry.load(Ordering::Relaxed))
            .sum()
    }
}

/// A registered task; deregisters it when dropped.
pub struct Registered {
    registry: Arc<TaskRegistry>,
    pub status: Arc<TaskStatus>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.registry.tasks.lock() {
            tasks.remove(&self.status.tkid);
        }
    }
}

impl TaskStatus {
    /// A task's status, and the receiving end of its FLUSHRETRY requests.
    pub fn new(
        tkid: u32,
        file: &str,
        job_name: &str,
        job_id: &str,
    ) -> (Self, mpsc::UnboundedReceiver<oneshot::Sender<u64>>) {
        let (flush, requests) = mpsc::unbounded_channel();
        let status = Self {
            tkid,
            file: file.to_owned(),
            job_name: job_name.to_owned(),
            job_id: job_id.to_owned(),
            owner: Mutex::new(String::new()),
            started: SystemTime::now(),
            mails_read: AtomicU64::new(0),
            mails_pending: AtomicU64::new(0),
            mails_retry: AtomicU64::new(0),
            rcpts_delivered: AtomicU64::new(0),
            rcpts_undeliverable: AtomicU64::new(0),
            rcpts_extended: AtomicU64::new(0),
            next_retry: Mutex::new(None),
            flush,
        };
        (status, requests)
    }
}
