//! The sink's own bookkeeping, over real loopback TCP.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::*;

/// Sends `command` (unless empty) and reads the reply up to its last line; "" when the
/// connection was closed instead.
async fn say(conn: &mut BufReader<TcpStream>, command: &str) -> String {
    if !command.is_empty() {
        conn.get_mut().write_all(command.as_bytes()).await.unwrap();
    }
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.unwrap() == 0 {
            return reply;
        }
        reply.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            return reply;
        }
    }
}

/// A mail cut off after its final "." is logged with the id it was kept under, also
/// when its script adds an unsolicited reply to the 250 (the id was once read back from
/// the reply text, and came out 0).
#[tokio::test]
async fn a_mail_cut_after_its_dot_is_logged_with_its_id() {
    let sink = Sink::bind(
        "127.0.0.1:0".parse().unwrap(),
        SinkOptions {
            faults: Some(Faults {
                drop_after_dot: 1000,
                ..Faults::default()
            }),
            ..SinkOptions::default()
        },
    )
    .await
    .unwrap();
    let mut conn = BufReader::new(TcpStream::connect(sink.addr).await.unwrap());
    assert!(say(&mut conn, "").await.starts_with("220 "));
    assert!(
        say(&mut conn, "HELO client.example\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(
        say(&mut conn, "MAIL FROM:<a@client.example>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(
        say(&mut conn, "RCPT TO:<extra-reply@example.com>\r\n")
            .await
            .starts_with("250 ")
    );
    assert!(say(&mut conn, "DATA\r\n").await.starts_with("354 "));
    assert_eq!(say(&mut conn, "Subject: s\r\n\r\nbody\r\n.\r\n").await, "");
    let kept = sink.received();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        sink.fault_log().dropped_after_dot,
        [Cut {
            id: kept[0].id,
            rcpt_to: vec!["extra-reply@example.com".to_owned()],
        }]
    );
}
