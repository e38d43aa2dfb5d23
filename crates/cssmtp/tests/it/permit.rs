//! Who may send (issue 14 point 4, CSSMTP's SERVAUTH profile): with `PermitUser` and
//! `PermitGroup`, only spool files owned by those users or members of those groups are
//! sent; the others are held with their report, never sent. Through the real binary,
//! the producers being unprivileged users created by the test.

use std::path::Path;

use crate::sendmail::{Bridge, outsider};
use crate::support::{cssmtp, mail, producer};

fn job(subject: &str) -> String {
    format!(
        "HELO h.example\n{}",
        mail(
            "a@h.example",
            &["x@example.com"],
            &format!("Subject: {subject}\n\nbody")
        )
    )
}

#[tokio::test]
async fn only_permitted_owners_send_the_others_are_held_and_reported() {
    let Some(bridge) =
        Bridge::new("PermitUser cssmtp-producer2\nPermitGroup cssmtp-caller\n").await
    else {
        return;
    };
    let (Some(alice), Some(caller)) = (producer("cssmtp-producer2"), outsider()) else {
        return;
    };
    // cssmtp-producer is in the spool's group (it can write the spool) but is neither
    // permitted by name nor a member of a permitted group.
    let mallory = bridge.producer;
    let config = &bridge.env.config_path;
    alice.submit(config, "ALICEJOB", &job("from alice"));
    mallory.submit(config, "MALJOB", &job("from mallory"));
    // Permitted by its (primary) group, through the setgid sendmail bridge.
    let out = bridge.run(
        caller,
        true,
        Path::new("/usr/sbin/sendmail"),
        &["ops@example.com"],
        &[],
        b"Subject: from caller\n\nx\n",
    );
    assert!(out.status.success(), "{out:?}");
    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(config)
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    // A held file: not everything was delivered.
    assert_eq!(out.status.code(), Some(3), "{log}");
    let mut subjects: Vec<String> = bridge
        .sink
        .received()
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.data).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["from alice", "from caller"], "{log}");
    assert!(
        log.contains("CSM4020W ")
            && log.contains("(job MALJOB ")
            && log.contains("its owner cssmtp-producer (uid "),
        "{log}"
    );
    let hold = bridge.layout.hold.clone();
    let mut held: Vec<String> = std::fs::read_dir(&hold)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    held.sort();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held[0].starts_with("MALJOB.") && held[1] == format!("{}.report", held[0]));
    let report = std::fs::read_to_string(hold.join(&held[1])).unwrap();
    assert!(
        report.contains(&format!(
            "553 5.7.1 The owner of the spool file, cssmtp-producer (uid {}), is not permitted to send through writer TESTWTR",
            mallory.uid
        )),
        "{report}"
    );
    // The held file is the one mallory wrote, untouched.
    assert!(
        std::fs::read_to_string(hold.join(&held[0]))
            .unwrap()
            .contains("Subject: from mallory")
    );
}
