//! AFL++ target `reply`: its body is `cssmtp_wire::fuzz::reply`, which the workspace tests
//! also run over `fuzz/corpus/reply/`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        cssmtp_wire::fuzz::reply(data);
    });
}
