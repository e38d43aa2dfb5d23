//! Returns keep the mail's protection and never cost the only copy: notifications and
//! error reports about mail that needed TLS travel over TLS or become dead letters that
//! keep `STARTTLS`; a dead letter, an extended-retry copy or a report that cannot be
//! written keeps the spool file (issue 9, points 4 and 5).
//!
//! `tls` holds the returns of TLS mail, `only_copy` the writes that fail without
//! costing the spool file, `journal_space` the checkpoint journal on a full file
//! system; this file their shared helpers.

mod journal_space;
mod only_copy;
mod tls;

use std::path::{Path, PathBuf};

use cssmtp::sink::SinkOptions;

use crate::support::{Env, TestPki, mail, notifications, originals, sink, target, text_with_ids};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
    });
    found.sort();
    found
}

/// A batch-SMTP file that asks for TLS, with one mail to `rcpt`.
fn tls_file(rcpt: &str) -> String {
    format!(
        "EHLO h.example\nSTARTTLS\n{}",
        mail(
            "a@h.example",
            &[rcpt],
            &text_with_ids("secret", "the secret")
        )
    )
}

/// A tmpfs of 64 KiB mounted at `dir` (created), unmounted when dropped; None (with a
/// note) when this process cannot mount (not root).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("note: not root, cannot mount a small file system; test skipped");
            return None;
        }
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0750", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("note: mount -t tmpfs failed; test skipped");
            return None;
        }
        Some(Self(dir.to_owned()))
    }

    /// Fills the file system: every write after this fails with ENOSPC.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join(".filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = [0u8; 4096];
        while f.write_all(&block).and_then(|()| f.sync_all()).is_ok() {}
        filler
    }

    /// Remounts it read-only (`ro`) or read-write.
    fn remount(&self, how: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// `cssmtp -q run` (warnings and errors on standard error, sent line by line).
struct Daemon {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl Daemon {
    fn start(env: &Env, extra: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = crate::support::cssmtp()
            .arg("-q")
            .arg("run")
            .arg("-c")
            .arg(&env.config_path)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (at most a minute: a real child process) for a log line containing `id`.
    async fn wait_for(&mut self, id: &str) -> String {
        let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(line) = self.lines.recv().await {
                self.log.push(line.clone());
                if line.contains(id) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no {id} in the log: {:#?}", self.log),
        }
    }
}

/// Waits (bounded: a real child process) until `sink` has received `n` mails.
async fn received(sink: &cssmtp::sink::Sink, n: usize) {
    for _ in 0..600 {
        if sink.received().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} mail(s) received, {n} expected", sink.received().len());
}
