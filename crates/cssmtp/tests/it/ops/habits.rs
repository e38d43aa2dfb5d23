//! Command-line habits: options anywhere, `--version` with the build's details, colour
//! only on a terminal and never with NO_COLOR, one table of exit statuses, "did you
//! mean" for subcommands and operator commands.

use std::process::Stdio;

use cssmtp::cli::exit::CODES;
use cssmtp::sink::SinkOptions;
use tokio::io::AsyncBufReadExt;

use super::have;
use crate::support::{Env, cssmtp, sink, target};

/// `cssmtp modify d tar --json` (the example): options after the command's
/// words, `-c` among them, as before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_may_follow_the_command_words() {
    let server = sink(SinkOptions::default()).await;
    let env = Env::new(&target(server.addr, ""));
    let mut daemon = cssmtp()
        .args(["run", "-c"])
        .arg(&env.config_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(daemon.stderr.take().unwrap()).lines();
    loop {
        match lines.next_line().await.unwrap() {
            Some(line) if line.contains("CSM1043I") => break,
            Some(_) => {}
            None => panic!("the daemon ended before it was ready"),
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let config = env.config_path.to_str().unwrap();

    for args in [
        vec!["modify", "d", "tar", "--json", "-c", config],
        vec!["modify", "-c", config, "d", "tar", "--json"],
        vec!["modify", "--json", "-c", config, "d", "tar"],
        vec!["-q", "modify", "d", "--json", "tar", "-c", config],
    ] {
        let out = cssmtp().args(&args).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reply: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"));
        assert_eq!(reply["ok"], true, "{args:?}: {reply}");
        assert!(
            stdout.contains(&server.addr.to_string()),
            "{args:?}: {stdout}"
        );
    }
    // Without --json anywhere: the console lines.
    let out = cssmtp()
        .args(["modify", "d", "tar", "-c", config])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("CSM5001I DISPLAY TARGETS"));

    let out = cssmtp()
        .args(["modify", "STOP", "-c", config])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(daemon.wait().await.unwrap().code(), Some(0));
}

/// `--version` names the build: version, git commit, dates, rustc, target, features;
/// `-V` the version alone.
#[tokio::test]
async fn version_tells_the_build() {
    let out = cssmtp().arg("--version").output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("cssmtp {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix("commit:"))
        .unwrap_or_else(|| panic!("no commit line: {text}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // Built from this checkout: the commit is the checkout's (when git can say).
    if let Ok(head) = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        && head.status.success()
    {
        let head = String::from_utf8_lossy(&head.stdout);
        assert!(
            commit.len() >= 7 && head.starts_with(&commit),
            "{commit} is not HEAD {head}"
        );
    }
    assert!(text.contains("\nbuilt:    20"), "{text}");
    assert!(text.contains(" with rustc 1."), "{text}");
    assert!(text.contains("\nfeatures: "), "{text}");

    let out = cssmtp().arg("-V").output().await.unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("cssmtp {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `cssmtp run --drain` on an empty spool under `script` (a real terminal): the log
/// is coloured on a terminal, not with NO_COLOR=1, and not into a pipe.
#[tokio::test]
async fn colour_only_on_a_terminal_and_never_with_no_color() {
    if !have("script") {
        println!("note: script(1) (util-linux) is missing; skipping");
        return;
    }
    let env = Env::new(&target(crate::support::closed_port(), ""));
    let line = format!(
        "{} run --drain -c {}",
        env!("CARGO_BIN_EXE_cssmtp"),
        env.config_path.display()
    );
    let on_terminal = |no_color: Option<&str>| {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &line, "/dev/null"])
            .env_remove("JOURNAL_STREAM")
            .env_remove("CSSMTP_LOG")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("CSM1001I"), "{coloured}");
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured}"
    );
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("CSM1001I"), "{plain}");
    assert!(!plain.contains('\x1b'), "colour despite NO_COLOR: {plain}");
    // NO_COLOR set but empty does not count (no-color.org).
    assert!(on_terminal(Some("")).contains("\x1b["));

    let piped = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    let piped = String::from_utf8_lossy(&piped.stderr);
    assert!(
        piped.contains("CSM1001I") && !piped.contains('\x1b'),
        "{piped}"
    );
}

/// One table of exit statuses: `--help` and the README's table both list every status
/// of [`CODES`], with the same meaning; usage errors are 2.
#[tokio::test]
async fn exit_statuses_are_one_table() {
    let out = cssmtp().arg("--help").output().await.unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let rows: Vec<(u8, String)> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| Exit status |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let mut cells = l.trim_matches('|').split(" | ");
            let code = cells.next().unwrap().trim().parse().unwrap();
            (code, cells.next().unwrap().trim().to_owned())
        })
        .collect();
    let table: Vec<(u8, String)> = CODES
        .iter()
        .map(|c| (c.code, c.meaning.to_owned()))
        .collect();
    assert_eq!(rows, table, "the README's exit status table");
    for c in CODES {
        let first_words: String = cssmtp::cli::exit::plain(c.meaning)
            .split(' ')
            .take(4)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            help.contains(&format!("  {:<3} {first_words}", c.code)),
            "--help lacks {}: {help}",
            c.code
        );
    }

    // Usage errors, clap's and cssmtp's own, are 2, with a hint for a near miss.
    let out = cssmtp().arg("chek").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("similar subcommand exists: 'check'"),
        "{stderr}"
    );
    let out = cssmtp()
        .args(["modify", "dispaly", "tar"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(did you mean DISPLAY?)"), "{stderr}");
}
