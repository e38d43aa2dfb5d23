//! The manual pages and completions generated from the command line and the statement
//! table: rendered by the real man(1), completed by the real bash.

use std::process::Command;

use super::have;
use crate::support::cssmtp;

/// man(1), installed from Debian's man-db when missing (as root); None when it cannot
/// be had.
fn man() -> Option<()> {
    if have("man") {
        return Some(());
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "man-db"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    (installed && have("man")).then_some(())
}

/// `man -l` renders cssmtp.8 and cssmtp.conf.5 without a warning from groff; cssmtp(8)
/// holds every subcommand with its options, and the exit statuses; cssmtp.conf(5)
/// every statement with its default, range and REFRESH.
#[tokio::test]
async fn man_renders_both_pages() {
    if man().is_none() {
        println!("note: man(1) is missing and man-db cannot be installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = cssmtp()
        .args(["manpage", "--dir"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let render = |page: &str| {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.path().join(page))
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man -l {page}: {stderr}");
        assert!(stderr.trim().is_empty(), "groff warns on {page}: {stderr}");
        // man may embolden by overstriking when its output is no terminal.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        strip_overstrike(&text)
    };

    let page = render("man8/cssmtp.8");
    for sub in ["run", "modify", "check", "submit", "sink", "demo"] {
        assert!(
            page.contains(&format!("cssmtp {sub}")),
            "cssmtp {sub}: {page}"
        );
    }
    for needle in [
        "--drain",
        "--job-name",
        "--max-mails-per-session",
        "CSSMTP_CONFIG",
        "EXIT STATUS",
        "NO_COLOR",
        "cssmtp.conf(5)",
    ] {
        assert!(page.contains(needle), "{needle}: {page}");
    }
    for code in cssmtp::cli::exit::CODES {
        assert!(
            page.contains(&format!("\n       {}", code.code)),
            "exit status {}",
            code.code
        );
    }
    assert!(
        !page.contains("manpage"),
        "the hidden subcommands stay hidden"
    );

    let page = render("man5/cssmtp.conf.5");
    let page = page.split_whitespace().collect::<Vec<_>>().join(" ");
    for name in cssmtp::config::manual::statement_names() {
        assert!(page.contains(name), "{name}: {page}");
    }
    for needle in [
        "JESSyntaxErrLimit n syntax errors tolerated",
        "Value: a whole number from 0 to 999. Default: 5. REFRESH applies a new value.",
        "Default: 64000. Restart only",
        "ConnectRetry Value: a whole number from 30 to 1200. Default: 120.",
    ] {
        assert!(page.contains(needle), "{needle}: {page}");
    }
}

/// `x\bx` (bold) and `_\bx` (underline) as plain `x`.
fn strip_overstrike(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{8}' {
            out.pop();
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

/// bash, with the script `cssmtp completions bash` prints, completes `cssmtp ch` to
/// `check`, and `cssmtp run --dr` to `--drain`.
#[tokio::test]
async fn bash_completes_a_subcommand() {
    if !have("bash") {
        println!("note: bash is missing; skipping");
        return;
    }
    let out = cssmtp()
        .args(["completions", "bash"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cssmtp.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |words: &[&str]| {
        let line = words.join(" ");
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let program = format!(
            "source {}\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT={}\n\
             complete -p cssmtp >/dev/null || exit 9\n\
             $(complete -p cssmtp | sed -E 's/.*-F ([^ ]+).*/\\1/') cssmtp '{}' '{}'\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script.display(),
            quoted.join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &program])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete(&["cssmtp", "ch"]), ["check"]);
    assert_eq!(complete(&["cssmtp", "run", "--dr"]), ["--drain"]);
    let all = complete(&["cssmtp", ""]);
    for sub in ["run", "modify", "check", "submit"] {
        assert!(all.iter().any(|w| w == sub), "{sub}: {all:?}");
    }
}
