//! The HTTP server under `serve`, on hyper (HTTP/1.1). It is the one part of the program
//! that faces the internet, so every resource a client can hold is bounded: the number of
//! connections (one over the limit is answered 503 and closed, never queued), the time to
//! send the request head and then the body, the whole life of a connection, the size of the
//! request line and headers, the number of headers, and each route's body. A route may also
//! carry a per-client rate limit. Handlers are plain blocking functions (they write to
//! `SQLite`), run on tokio's blocking pool so a slow disk never stalls the listener.

pub(crate) mod page;
pub(crate) mod rate;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

pub(crate) use rate::RateLimit;

/// What one client may hold and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// The request line and headers must arrive within this time, and then the body.
    pub read_deadline: Duration,
    /// A connection (keep-alive included, writing the answer included) lives at most this.
    pub connection_deadline: Duration,
    /// Request line plus headers, in bytes (431 above it).
    pub max_head_bytes: usize,
    /// Header lines (431 above it).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            read_deadline: Duration::from_secs(10),
            connection_deadline: Duration::from_mins(1),
            max_head_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// A request as a handler sees it: the whole body already read, within the route's limit.
pub(crate) struct Request {
    pub method: Method,
    /// The path and query, as sent.
    pub target: String,
    /// Header fields, names in lower case (what hyper read within the head's limits).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The address the connection came from (a proxy's, behind one).
    pub peer: SocketAddr,
}

impl Request {
    /// The first value of a header field (name in lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

type Handler = dyn Fn(Request) -> Response + Send + Sync;

/// One route: which targets it takes, the largest body it reads, an optional rate limit per
/// client address, and what answers.
pub(crate) struct Route {
    pub name: &'static str,
    pub matches: Box<dyn Fn(&str) -> bool + Send + Sync>,
    pub body_limit: usize,
    pub rate: Option<RateLimit>,
    pub handler: Box<Handler>,
}

struct Site {
    routes: Vec<(Route, Option<rate::Limiter>)>,
    limits: Limits,
}

/// Serves `routes` on `listener` until the process ends; a client's misbehaviour only costs
/// that client.
pub(crate) fn serve(listener: TcpListener, limits: Limits, routes: Vec<Route>) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("cannot make the listener non-blocking")?;
    let site = Arc::new(Site {
        routes: routes
            .into_iter()
            .map(|r| {
                let limiter = r.rate.map(rate::Limiter::new);
                (r, limiter)
            })
            .collect(),
        limits,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP server")?;
    runtime.block_on(accept_loop(listener, site))
}

async fn accept_loop(listener: TcpListener, site: Arc<Site>) -> Result<()> {
    let listener =
        tokio::net::TcpListener::from_std(listener).context("cannot use the listener")?;
    let slots = Arc::new(Semaphore::new(site.limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(site.limits.read_deadline)
        .max_header_size(site.limits.max_head_bytes)
        .max_headers(site.limits.max_headers)
        .max_buf_size(site.limits.max_head_bytes.max(8192));
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was taken: wait a
                // moment rather than spin, and keep serving the others.
                eprintln!("warning: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            refuse(&stream);
            continue;
        };
        let (site, builder) = (Arc::clone(&site), Arc::clone(&builder));
        tokio::spawn(async move {
            let service = service_fn(|request| {
                let site = Arc::clone(&site);
                async move { Ok::<_, std::convert::Infallible>(answer(site, request, peer).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            // Whatever the client does, the connection and its slot end at the deadline.
            let _ = tokio::time::timeout(site.limits.connection_deadline, connection).await;
            drop(permit);
        });
    }
}

/// Over the connection limit: a short 503 if the socket takes it at once, then close.
fn refuse(stream: &tokio::net::TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\nToo many connections";
    let _ = stream.try_write(BUSY);
}

/// Answers one request: route, rate limit, body within its limit and deadline, then the
/// handler on the blocking pool.
async fn answer(
    site: Arc<Site>,
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    let target = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_string(),
        |p| p.as_str().to_string(),
    );
    let Some(index) = site.routes.iter().position(|(r, _)| (r.matches)(&target)) else {
        return plain(StatusCode::NOT_FOUND, "There is nothing here.", false);
    };
    let (route, limiter) = &site.routes[index];
    if let Some(limiter) = limiter
        && let Err(wait) = limiter.check(peer.ip(), crate::clock::instant())
    {
        // Answered before the body is read: the connection closes with it.
        let mut response = plain(StatusCode::TOO_MANY_REQUESTS, "Too many requests.", true);
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(RETRY_AFTER, v);
        }
        return response;
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.body_limit as u64) {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request is too large.",
            true,
        );
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        site.limits.read_deadline,
        Limited::new(body, route.body_limit).collect(),
    )
    .await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request is too large.",
                true,
            );
        }
        Ok(Err(_)) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "The request body could not be read.",
                true,
            );
        }
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "The request body did not arrive in time.",
                true,
            );
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let request = Request {
        method: parts.method,
        target,
        headers,
        body,
        peer,
    };
    let handler_site = Arc::clone(&site);
    match tokio::task::spawn_blocking(move || (handler_site.routes[index].0.handler)(request)).await
    {
        Ok(response) => into_hyper(response),
        Err(e) => {
            eprintln!(
                "error: the {} handler failed: {e}",
                site.routes[index].0.name
            );
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong.",
                true,
            )
        }
    }
}

fn into_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    for (name, value) in response.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.headers_mut().append(name, v);
        }
    }
    out
}

/// A short text answer; `close` when the request body was not read to its end, so the
/// connection cannot be reused with what is left of it.
fn plain(status: StatusCode, text: &'static str, close: bool) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    out
}
