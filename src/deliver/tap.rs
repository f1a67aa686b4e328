//! A stream handed to lettre that keeps a copy of what the server says while asked to,
//! so the one EHLO lettre sends serves us too: lettre keeps only the EHLO keywords it
//! knows, and neither PIPELINING nor SIZE is one of them. It can also serve a greeting
//! of its own first, for a session whose greeting and STARTTLS happened before lettre.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the server said since the tap was made, until `stop`.
#[derive(Clone, Default)]
pub(crate) struct Heard(Arc<Mutex<Option<Vec<u8>>>>);

impl Heard {
    /// The bytes heard so far; nothing more is kept after this.
    pub(crate) fn stop(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .unwrap_or_default()
    }
}

pub(crate) struct Tap {
    inner: Box<dyn AsyncTokioStream>,
    /// Served before anything from `inner`.
    prefix: Vec<u8>,
    served: usize,
    heard: Heard,
}

impl Tap {
    pub(crate) fn new(inner: Box<dyn AsyncTokioStream>, prefix: &[u8]) -> (Tap, Heard) {
        let heard = Heard(Arc::new(Mutex::new(Some(Vec::new()))));
        let tap = Tap {
            inner,
            prefix: prefix.to_vec(),
            served: 0,
            heard: heard.clone(),
        };
        (tap, heard)
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.served < self.prefix.len() {
            let n = (self.prefix.len() - self.served).min(buf.remaining());
            let start = self.served;
            buf.put_slice(&self.prefix[start..start + n]);
            self.served += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result
            && let Ok(mut heard) = self.heard.0.lock()
            && let Some(bytes) = heard.as_mut()
        {
            bytes.extend_from_slice(&buf.filled()[before..]);
        }
        result
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl AsyncTokioStream for Tap {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// The keyword lines of the last EHLO reply in `heard` (after its first line, the
/// server's name), without their `250-` or `250 `.
pub(crate) fn ehlo_keywords(heard: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(heard);
    let mut lines: Vec<String> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in text.split("\r\n") {
        if let Some(rest) = line.strip_prefix("250") {
            current.push(rest.get(1..).unwrap_or("").to_string());
            if rest.starts_with(' ') || rest.is_empty() {
                lines = std::mem::take(&mut current);
            }
        }
    }
    lines.into_iter().skip(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keywords_of_the_ehlo_reply_are_read() {
        let heard = b"220 sink ESMTP\r\n250-sink\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n";
        assert_eq!(
            ehlo_keywords(heard),
            ["PIPELINING", "SIZE 10240000", "8BITMIME"]
        );
        assert!(ehlo_keywords(b"220 hi\r\n").is_empty());
    }
}
