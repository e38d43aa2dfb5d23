//! AFL++ target `control`: its body is `cssmtp::fuzz::control`, which the workspace tests
//! also run over `fuzz/corpus/control/`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        cssmtp::fuzz::control(data);
    });
}
