//! A TCP connection that may have been upgraded to TLS (STARTTLS), for both our client
//! sessions and the sink's server sessions.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// Plain TCP, or TLS over it after STARTTLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// Reads what is available into the spare capacity of `buf` (at least 1 byte, or 0
    /// at end of stream).
    pub async fn read_some(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        match self {
            Self::Plain(s) => s.read_buf(buf).await,
            Self::Tls(s) => s.read_buf(buf).await,
        }
    }

    /// Reads what the peer has already sent, without waiting: `Ok(None)` when nothing is
    /// waiting now, else like [`Conn::read_some`] (`Some(0)` at end of stream).
    pub async fn read_now(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let mut read = std::pin::pin!(self.read_some(buf));
        // Polled once; unconstrained, so that tokio's cooperative budget cannot make it
        // look as if nothing had arrived. Dropping a pending read loses no byte.
        tokio::task::unconstrained(std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match read.as_mut().poll(cx) {
                std::task::Poll::Ready(result) => Some(result),
                std::task::Poll::Pending => None,
            })
        }))
        .await
        .transpose()
    }

    /// Writes all of `bytes` and flushes them to the socket.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Closes the write side (best effort).
    pub async fn shutdown(&mut self) {
        let _ = match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
        };
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}
