//! DKIM signing (issue 15 point 3) through the real binary: `cssmtp run --drain` signs
//! the mails of a From: domain with its `DkimKey`s (RSA-SHA256 and Ed25519), a loopback
//! sink receives them, and dkimpy (Debian's python3-dkim, `.ci/install-peers dkimpy`),
//! an independent verifier, checks each signature with the public keys fed through its
//! DNS hook. A tampered body fails, so the check checks something.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use cssmtp::sink::SinkOptions;
use rcgen::{KeyPair, PKCS_ED25519, PKCS_RSA_SHA256, PublicKeyData, RsaKeySize};

use crate::support::{Env, cssmtp, mail, sink, target};

/// dkimpy is installed (`.ci/install-peers dkimpy`); false, with a note, when it cannot
/// be (the test is skipped).
fn dkimpy() -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let installed = std::process::Command::new(root.join("../../.ci/install-peers"))
        .arg("dkimpy")
        .status();
    match installed {
        Ok(status) if status.success() => true,
        _ => {
            eprintln!("note: dkimpy (python3-dkim) cannot be installed: DKIM test skipped");
            false
        }
    }
}

/// Writes a private key file cssmtp may use (mode 600).
fn write_key(dir: &Path, name: &str, pem: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Runs dkimpy on `data` with `records` (`name=TXT`); whether every signature verified,
/// and what it printed.
fn verify(dir: &Path, data: &[u8], records: &[String]) -> (bool, String) {
    let file = dir.join("received.eml");
    std::fs::write(&file, data).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dkim_verify.py");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(&file)
        .args(records)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs `cssmtp run --drain` on `env`; whether it exited 0.
async fn drain(env: &Env) -> bool {
    cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .status()
        .await
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ed25519_signatures_verify_with_dkimpy_and_a_tampered_body_does_not() {
    if !dkimpy() {
        return;
    }
    let rsa = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let ed = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let server = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "DkimKey {{ Domain example.com Selector rsa2026 KeyFile rsa.pem }}\n\
         DkimKey\n{{\n  Domain Example.COM\n  Selector ed2026\n  KeyFile ed.pem\n  Algorithm Ed25519\n}}\n\
         DkimKey {{ Domain other.example Selector s1 KeyFile rsa.pem }}\n\
         {}",
        target(server.addr, "")
    ));
    write_key(env.dir.path(), "rsa.pem", &rsa.serialize_pem(), 0o600);
    write_key(env.dir.path(), "ed.pem", &ed.serialize_pem(), 0o600);
    // A text with what canonicalization and dot-stuffing touch: a dot line (stuffed in
    // the spool file, as producers write it), blanks at line ends, a folded header,
    // empty lines at the end of the body.
    let text = "From: Batch Job <job@example.com>\n\
                To: someone@example.org\n\
                Subject: DKIM\n  folded subject\n\
                Date: Sat, 28 Nov 2026 10:00:00 +0000\n\
                \n\
                First line.   \n\
                ..a line that starts with a dot\n\
                \tindented\n\
                \n\
                \n";
    let unsigned = "From: someone@nokey.example\nSubject: no key\n\nbody\n";
    // A text of many read chunks (about 1 MB), with dot lines among them: the body hash
    // is computed a chunk at a time.
    let mut big = String::from("From: job@example.com\nSubject: big\n\n");
    for i in 0..8000 {
        if i % 7 == 0 {
            big.push_str("..");
        }
        big.push_str(&format!("{i:05} {}  \n", "x".repeat(i % 200)));
    }
    env.submit(
        "DKIM",
        &format!(
            "HELO zos.example\n{}{}{}",
            mail("job@example.com", &["x@example.org"], text),
            mail("a@nokey.example", &["y@example.org"], unsigned),
            mail("job@example.com", &["z@example.org"], &big)
        ),
    );
    assert!(drain(&env).await, "the drain succeeds");
    let received = server.received();
    assert_eq!(received.len(), 3, "the mails are delivered");
    let signed = received
        .iter()
        .find(|m| m.rcpt_to == ["x@example.org"])
        .unwrap();
    let text = String::from_utf8_lossy(&signed.data).into_owned();
    assert!(
        text.starts_with("DKIM-Signature: "),
        "the signatures come first: {text}"
    );
    assert_eq!(text.matches("DKIM-Signature: ").count(), 2, "{text}");
    assert!(text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"));
    assert!(text.contains("c=relaxed/relaxed"), "{text}");
    assert!(
        text.contains("\r\n.a line that starts with a dot\r\n"),
        "{text}"
    );
    let records = [
        format!(
            "rsa2026._domainkey.example.com=v=DKIM1; k=rsa; p={}",
            b64(&rsa.subject_public_key_info())
        ),
        format!(
            "ed2026._domainkey.example.com=v=DKIM1; k=ed25519; p={}",
            b64(ed.public_key_raw())
        ),
    ];
    let (ok, out) = verify(env.dir.path(), &signed.data, &records);
    assert!(ok, "dkimpy verifies both signatures: {out}");
    assert!(
        out.contains("example.com rsa2026 pass") && out.contains("example.com ed2026 pass"),
        "{out}"
    );

    let large = received
        .iter()
        .find(|m| m.rcpt_to == ["z@example.org"])
        .unwrap();
    assert!(large.data.len() > 800_000);
    let (ok, out) = verify(env.dir.path(), &large.data, &records);
    assert!(ok, "dkimpy verifies the signatures of a large text: {out}");

    // One byte of the body changed: both fail.
    let tampered = text.replace("First line.", "First line!");
    let (ok, out) = verify(env.dir.path(), tampered.as_bytes(), &records);
    assert!(!ok, "a tampered body fails: {out}");
    assert!(
        out.contains("rsa2026 fail") && out.contains("ed2026 fail"),
        "{out}"
    );
    // A signed header changed: fails too.
    let tampered = text.replace("Subject: DKIM", "Subject: DKIN");
    let (ok, out) = verify(env.dir.path(), tampered.as_bytes(), &records);
    assert!(!ok, "a tampered header fails: {out}");

    // No key for its From: domain: sent unsigned.
    let other = received
        .iter()
        .find(|m| m.rcpt_to == ["y@example.org"])
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&other.data).contains("DKIM-Signature"),
        "a mail of a domain without a key is not signed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_readable_by_others_is_refused_by_check_with_its_file_and_line() {
    let ed = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let env = Env::new(
        "TargetServer\n{\n  TargetIp 127.0.0.1\n}\n\
         DkimKey { Domain example.com Selector ok KeyFile ok.pem }\n\
         DkimKey { Domain example.com Selector open KeyFile open.pem }\n",
    );
    write_key(env.dir.path(), "ok.pem", &ed.serialize_pem(), 0o600);
    let open = write_key(env.dir.path(), "open.pem", &ed.serialize_pem(), 0o640);
    let out = cssmtp()
        .args(["check", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(78), "{text}");
    // The configuration's line 10: five lines of Env's, four of the target.
    assert!(
        text.contains(&format!(
            "CSM3330E DkimKey KeyFile {} (line 10) cannot be used: its mode is 0640",
            open.display()
        )),
        "{text}"
    );
    assert!(
        !text.contains("ok.pem"),
        "the good key is not named: {text}"
    );

    // Fixed, check passes; a key of the wrong algorithm is refused.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ok = cssmtp()
        .args(["check", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let env = Env::new(
        "TargetServer\n{\n  TargetIp 127.0.0.1\n}\n\
         DkimKey { Domain example.com Selector s KeyFile k.pem Algorithm Rsa }\n",
    );
    write_key(env.dir.path(), "k.pem", &ed.serialize_pem(), 0o600);
    let out = cssmtp()
        .args(["check", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains("it holds an Ed25519 key where Algorithm RSA was given"),
        "{text}"
    );
}

/// Two keys of a domain (a rotation): one whose file became readable by others after
/// start is skipped (CSM3331W) and the other still signs; when neither can be used, the
/// mail goes unsigned (CSM3331W), never held or dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_became_unusable_is_skipped_and_the_mail_still_goes() {
    if !dkimpy() {
        return;
    }
    let new = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let old = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let server = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "DkimKey {{ Domain example.com Selector new KeyFile new.pem }}\n\
         DkimKey {{ Domain example.com Selector old KeyFile old.pem }}\n{}",
        target(server.addr, "")
    ));
    let new_path = write_key(env.dir.path(), "new.pem", &new.serialize_pem(), 0o600);
    let old_path = write_key(env.dir.path(), "old.pem", &old.serialize_pem(), 0o600);
    let daemon = crate::tls_binary::Running::start(&env).await;
    let one = |rcpt: &str| {
        format!(
            "HELO zos.example\n{}",
            mail(
                "job@example.com",
                &[rcpt],
                "From: job@example.com\nSubject: rotation\n\nbody\n"
            )
        )
    };
    std::fs::set_permissions(&old_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.submit("ROT1", &one("a@example.org"));
    server.wait_for(1).await;
    let first = server.received().remove(0);
    let text = String::from_utf8_lossy(&first.data).into_owned();
    assert_eq!(text.matches("DKIM-Signature: ").count(), 1, "{text}");
    let records = [format!(
        "new._domainkey.example.com=v=DKIM1; k=ed25519; p={}",
        b64(new.public_key_raw())
    )];
    let (ok, out) = verify(env.dir.path(), &first.data, &records);
    assert!(ok && out.contains("example.com new pass"), "{out}");

    std::fs::set_permissions(&new_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.submit("ROT2", &one("b@example.org"));
    server.wait_for(2).await;
    let second = server
        .received()
        .into_iter()
        .find(|m| m.rcpt_to == ["b@example.org"])
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&second.data).contains("DKIM-Signature"),
        "sent unsigned"
    );
    let log = daemon.stop().await;
    assert!(
        log.iter()
            .any(|l| l.contains("CSM3331W a DKIM key is skipped") && l.contains("old.pem")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("CSM3331W") && l.contains("is sent without a DKIM signature")),
        "{log:#?}"
    );
}

/// A user exit that writes a new text: the mail is signed again as it now goes (the
/// exit never sees the first signature), and the signature verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_changed_by_the_user_exit_is_signed_as_it_goes() {
    if !dkimpy() {
        return;
    }
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let server = sink(SinkOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let exit = dir.path().join("exit.sh");
    // Replaces the body; keeps the header section as given; fails the test if it is
    // shown a DKIM-Signature.
    std::fs::write(
        &exit,
        "#!/bin/sh\nsed '1,/^$/d' | awk 'BEGIN{h=1} h&&/^$/{h=0; print; print \"changed by the exit\"; next} h{print}' > /tmp/cssmtp-dkim-exit.$$\n\
         if grep -qi '^dkim-signature' /tmp/cssmtp-dkim-exit.$$; then rm -f /tmp/cssmtp-dkim-exit.$$; exit 3; fi\n\
         cat /tmp/cssmtp-dkim-exit.$$; rm -f /tmp/cssmtp-dkim-exit.$$; exit 10\n",
    )
    .unwrap();
    std::fs::set_permissions(&exit, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = Env::new(&format!(
        "DkimKey {{ Domain example.com Selector s1 KeyFile k.pem }}\n\
         UserExit {{ Program {} TimeLimit 30 }}\n{}",
        exit.display(),
        target(server.addr, "")
    ));
    write_key(env.dir.path(), "k.pem", &key.serialize_pem(), 0o600);
    env.submit(
        "EXIT1",
        &format!(
            "HELO zos.example\n{}",
            mail(
                "job@example.com",
                &["a@example.org"],
                "From: job@example.com\nSubject: exit and DKIM\n\nthe original body\n"
            )
        ),
    );
    assert!(drain(&env).await);
    let got = server.received().remove(0);
    let text = String::from_utf8_lossy(&got.data).into_owned();
    assert!(text.contains("changed by the exit"), "{text}");
    assert!(!text.contains("the original body"), "{text}");
    assert_eq!(text.matches("DKIM-Signature: ").count(), 1, "{text}");
    let records = [format!(
        "s1._domainkey.example.com=v=DKIM1; k=ed25519; p={}",
        b64(key.public_key_raw())
    )];
    let (ok, out) = verify(env.dir.path(), &got.data, &records);
    assert!(ok && out.contains("example.com s1 pass"), "{out}");
}
