//! The `batch` fuzz target's short deterministic run: the seed corpus (and every
//! regression input kept in `fuzz/corpus/batch/`) and random inputs, through the same
//! function AFL++ runs (`cssmtp_batch::fuzz::batch`).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;

#[test]
fn the_batch_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/batch");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        cssmtp_batch::fuzz::batch(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seed in {}", dir.display());
}

fn spool_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"HELO h.example".to_vec()),
        Just(b"EHLO h.example".to_vec()),
        Just(b"STARTTLS".to_vec()),
        Just(b"MAIL FROM:<a@h.example>".to_vec()),
        Just(b"MAIL FROM:<>".to_vec()),
        Just(b"RCPT TO:<x@example.com>".to_vec()),
        Just(b"DATA".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b"QUIT".to_vec()),
        Just(b"RSET".to_vec()),
        Just(vec![b'x'; 1200]),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_spool_files_keep_the_invariants(
        lines in prop::collection::vec(spool_line(), 0..30),
        crlf in any::<bool>(),
    ) {
        let sep: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        cssmtp_batch::fuzz::batch(&lines.join(sep));
    }

    #[test]
    fn random_bytes_keep_the_invariants(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        cssmtp_batch::fuzz::batch(&data);
    }
}
