//! Inputs for the parser micro-benchmarks (see `benches/parsers.rs`).

/// A batch-SMTP spool file of `mails` mails with `rcpts` recipients and a text of about
/// `text_bytes` bytes each, as a batch job would write it.
pub fn spool_file(mails: usize, rcpts: usize, text_bytes: usize) -> Vec<u8> {
    let line = "The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJ.\n";
    let lines = text_bytes / line.len() + 1;
    let mut out = String::from("EHLO zos1.bench.example\n");
    for m in 0..mails {
        out.push_str("MAIL FROM:<batch@zos1.bench.example>\n");
        for r in 0..rcpts {
            out.push_str(&format!("RCPT TO:<user{r}@example.com>\n"));
        }
        out.push_str(&format!(
            "DATA\nSubject: mail {m}\nFrom: batch@zos1.bench.example\n\n"
        ));
        for l in 0..lines {
            if l % 10 == 0 {
                out.push_str("..a line that starts with a dot\n");
            } else {
                out.push_str(line);
            }
        }
        out.push_str(".\n");
    }
    out.push_str("QUIT\n");
    out.into_bytes()
}

/// A server's replies to a pipelined transaction with `rcpts` recipients, repeated
/// `transactions` times.
pub fn reply_stream(transactions: usize, rcpts: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..transactions {
        out.extend_from_slice(b"250 2.1.0 Sender OK\r\n");
        for _ in 0..rcpts {
            out.extend_from_slice(b"250 2.1.5 Recipient OK\r\n");
        }
        out.extend_from_slice(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
        out.extend_from_slice(b"250 2.0.0 Ok: queued as 4Fp2xR1KzTz9vXy\r\n");
    }
    out
}
