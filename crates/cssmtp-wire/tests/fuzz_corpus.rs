//! The `reply` fuzz target's short deterministic run: the seed corpus (and every
//! regression input kept in `fuzz/corpus/reply/`) and random inputs, through the same
//! function AFL++ runs (`cssmtp_wire::fuzz::reply`).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;

#[test]
fn the_reply_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/reply");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        cssmtp_wire::fuzz::reply(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seed in {}", dir.display());
}

fn reply_line() -> impl Strategy<Value = String> {
    (
        200u16..600,
        prop_oneof![Just(" "), Just("-"), Just("")],
        "[ -~]{0,30}",
    )
        .prop_map(|(code, sep, text)| format!("{code}{sep}{text}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_replies_keep_the_invariants(
        lines in prop::collection::vec(reply_line(), 0..12),
    ) {
        cssmtp_wire::fuzz::reply(format!("{}\r\n", lines.join("\r\n")).as_bytes());
    }

    #[test]
    fn random_bytes_keep_the_invariants(data in prop::collection::vec(any::<u8>(), 0..512)) {
        cssmtp_wire::fuzz::reply(&data);
    }
}
