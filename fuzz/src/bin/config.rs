//! AFL++ target `config`: its body is `cssmtp::fuzz::config`, which the workspace tests
//! also run over `fuzz/corpus/config/`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        cssmtp::fuzz::config(data);
    });
}
