//! The bodies of the `config` and `control` fuzz targets (`fuzz/`, run under AFL++);
//! the tests replay the seed corpus and random inputs through the same functions. They
//! panic when an invariant does not hold for `data`.

use std::path::Path;

use crate::config::{self, Severity};
use crate::control::{self, Request};

/// Validates `data` as a configuration file (syntax and meaning; no file is read):
/// a configuration comes back exactly when no diagnostic is an error, every
/// diagnostic names a line of the file (or none), and a valid configuration can be
/// shown (the running configuration of DISPLAY CONFIG) and merged into itself by a
/// REFRESH with nothing changed.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (valid, diagnostics) = config::validate(Path::new("/fuzz/cssmtp.conf"), text);
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    assert_eq!(valid.is_some(), errors == 0, "{diagnostics:?}");
    let lines = text.lines().count();
    for d in &diagnostics {
        assert!(
            usize::try_from(d.line).unwrap_or(usize::MAX) <= lines.max(1),
            "line {} of {lines}",
            d.line
        );
        let _ = d.to_string();
    }
    if let Some(c) = valid {
        let _ = config::running::render(&c);
        let (merged, _changes) = config::running::merge(&c, c.clone());
        assert_eq!(
            merged, c,
            "REFRESH with the same file changed the configuration"
        );
    }
}

/// Parses `data` as an operator command and as a control-socket request line.
pub fn control(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = control::parse(text);
    if let Ok(request) = serde_json::from_str::<Request>(text) {
        let _ = control::parse(&request.command);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// The seed corpus of fuzz target `target` (`fuzz/corpus/<target>/`), and every
    /// regression input kept there.
    fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let mut out: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                (path.display().to_string(), std::fs::read(&path).unwrap())
            })
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no seed in {}", dir.display());
        out
    }

    use super::*;

    #[test]
    fn the_config_corpus_replays() {
        for (name, data) in corpus("config") {
            eprintln!("{name}");
            config(&data);
        }
    }

    #[test]
    fn the_control_corpus_replays() {
        for (name, data) in corpus("control") {
            eprintln!("{name}");
            control(&data);
        }
    }

    fn config_text() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            Just("TargetServer".to_owned()),
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("TargetIp 192.0.2.1".to_owned()),
            Just("TargetName mx.example".to_owned()),
            Just("TargetMx example.com".to_owned()),
            Just("Secure Yes".to_owned()),
            Just("ConnectPort 25".to_owned()),
            Just("Timeout".to_owned()),
            Just("AnyCmd 60".to_owned()),
            Just("Options NullTrnc".to_owned()),
            Just("MetricsListen 127.0.0.1:9100".to_owned()),
            Just("ExtWrtName W1".to_owned()),
            Just("Retry Limit 3 Interval 60".to_owned()),
            Just("\"quoted value\"".to_owned()),
            "[ -~]{0,20}",
        ];
        prop::collection::vec(word, 0..24).prop_map(|words| words.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_configs_keep_the_invariants(text in config_text()) {
            config(text.as_bytes());
        }

        #[test]
        fn random_bytes_as_configs(data in prop::collection::vec(any::<u8>(), 0..512)) {
            config(&data);
        }

        #[test]
        fn random_control_requests(text in "[ -~]{0,80}") {
            control(text.as_bytes());
            control(format!("{{\"command\":{text:?}}}").as_bytes());
        }
    }
}
