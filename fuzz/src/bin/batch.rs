//! AFL++ target `batch`: its body is `cssmtp_batch::fuzz::batch`, which the workspace tests
//! also run over `fuzz/corpus/batch/`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        cssmtp_batch::fuzz::batch(data);
    });
}
