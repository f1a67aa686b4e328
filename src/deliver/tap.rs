//! A stream handed to lettre that keeps a copy of what the server says while asked to,
//! so the one EHLO lettre sends serves us too: lettre keeps only the EHLO keywords it
//! knows, and neither PIPELINING nor SIZE is one of them. It can also serve a greeting
//! of its own first, for a session whose greeting and STARTTLS happened before lettre.
//! And it can hold back the end of a write until a step of the journal is on disk
//! (`Hold`): a message's final dot, which must wait for it, leaves after its content.

use std::future::Future;
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

/// What the end of a write waits for: whether a journal step applied, once it is on disk.
pub(crate) type Gate = Pin<Box<dyn Future<Output = anyhow::Result<bool>> + Send>>;

/// The end of the next write held back until a gate opens; shared by the session, which
/// arms it, and its stream, which holds the bytes.
#[derive(Clone, Default)]
pub(crate) struct Hold(Arc<Mutex<Held>>);

#[derive(Default)]
enum Held {
    #[default]
    Open,
    Armed {
        /// How many bytes at the end of the next write wait for the gate.
        tail: usize,
        /// Bytes of that write that may still go before it, once the write has begun.
        before: Option<usize>,
        gate: Gate,
    },
    /// The gate opened with this answer (an error as text: the stream reports it too).
    Passed(Result<bool, String>),
}

impl Hold {
    /// Holds the last `tail` bytes of the next write until `gate` completes.
    pub(crate) fn arm(&self, tail: usize, gate: Gate) {
        if let Ok(mut held) = self.0.lock() {
            *held = Held::Armed {
                tail,
                before: None,
                gate,
            };
        }
    }

    /// The gate's answer once it opened; `None` if the write never reached it (it failed
    /// first) or none was armed. Disarms it either way.
    pub(crate) fn take(&self) -> Option<anyhow::Result<bool>> {
        let held = self.0.lock().ok().map(|mut h| std::mem::take(&mut *h))?;
        match held {
            Held::Passed(answer) => Some(answer.map_err(|e| anyhow::anyhow!(e))),
            Held::Open | Held::Armed { .. } => None,
        }
    }

    /// How much of `buf` may be written now: all of it, or the part before the held tail
    /// (`Ready(None)` once the gate has opened, `Pending` while it is shut).
    fn poll_allowed(&self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<Option<usize>>> {
        let Ok(mut held) = self.0.lock() else {
            return Poll::Ready(Ok(None));
        };
        let Held::Armed { tail, before, gate } = &mut *held else {
            return Poll::Ready(Ok(None));
        };
        let before = *before.get_or_insert(len.saturating_sub(*tail));
        if before > 0 {
            return Poll::Ready(Ok(Some(before.min(len))));
        }
        let Poll::Ready(answer) = gate.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        let answer = answer.map_err(|e| format!("{e:#}"));
        // On a failure the bytes held stay unsent: the connection ends without them.
        let result = match &answer {
            Ok(_) => Ok(None),
            Err(e) => Err(io::Error::other(e.clone())),
        };
        *held = Held::Passed(answer);
        Poll::Ready(result)
    }

    /// `n` bytes before the held tail went out.
    fn wrote(&self, n: usize) {
        if let Ok(mut held) = self.0.lock()
            && let Held::Armed {
                before: Some(before),
                ..
            } = &mut *held
        {
            *before -= n.min(*before);
        }
    }
}

pub(crate) struct Tap {
    inner: Box<dyn AsyncTokioStream>,
    /// Served before anything from `inner`.
    prefix: Vec<u8>,
    served: usize,
    heard: Heard,
    hold: Hold,
}

impl Tap {
    pub(crate) fn new(inner: Box<dyn AsyncTokioStream>, prefix: &[u8]) -> (Tap, Heard, Hold) {
        let heard = Heard(Arc::new(Mutex::new(Some(Vec::new()))));
        let hold = Hold::default();
        let tap = Tap {
            inner,
            prefix: prefix.to_vec(),
            served: 0,
            heard: heard.clone(),
            hold: hold.clone(),
        };
        (tap, heard, hold)
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
        match self.hold.poll_allowed(cx, buf.len()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(None)) => Pin::new(&mut self.inner).poll_write(cx, buf),
            Poll::Ready(Ok(Some(n))) => {
                let written = Pin::new(&mut self.inner).poll_write(cx, &buf[..n]);
                if let Poll::Ready(Ok(n)) = written {
                    self.hold.wrote(n);
                }
                written
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Vectored writes go through `poll_write` (the default), so that a hold applies.
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
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A write with a hold: the part before the held tail reaches the peer at once, the
    /// tail only once the gate opens, and the gate's answer is kept for the session.
    #[test]
    fn the_held_tail_of_a_write_waits_for_its_gate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (mut peer, _) = listener.accept().await.expect("accept");
            let (mut tap, _, hold) = Tap::new(Box::new(client), b"");
            let (open, shut) = tokio::sync::oneshot::channel::<()>();
            hold.arm(
                ".\r\nMAIL".len(),
                Box::pin(async move {
                    shut.await.map_err(|_| anyhow::anyhow!("dropped"))?;
                    Ok(false)
                }),
            );
            let writer =
                tokio::spawn(
                    async move { tap.write_all(b"content\r\n.\r\nMAIL").await.map(|()| tap) },
                );
            let mut got = vec![0u8; 64];
            let n = peer.read(&mut got).await.expect("read");
            assert_eq!(&got[..n], b"content\r\n");
            // Nothing more while the gate is shut.
            let more = tokio::time::timeout(Duration::from_millis(100), peer.read(&mut got)).await;
            assert!(more.is_err(), "the tail left before its gate opened");
            open.send(()).expect("gate");
            let n = peer.read(&mut got).await.expect("read");
            assert_eq!(&got[..n], b".\r\nMAIL");
            writer.await.expect("join").expect("write");
            assert_eq!(hold.take().map(|a| a.expect("answer")), Some(false));
            assert!(hold.take().is_none(), "taken once");
        });
    }

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
