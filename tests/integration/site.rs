//! An HTTP server on 127.0.0.1 for the tests that fetch over HTTP (feeds, link checks):
//! hyper's HTTP/1 server, a task per connection, connections kept alive as a web server
//! keeps them. Each request is answered by a plain function on a thread of its own, so an
//! answer may sleep (a slow host) or wait for another request.
//!
//! `tiny_http`, used before, hands each connection to a worker of a small pool and keeps the
//! worker for the connection's life: a client holding its connections open for reuse, and
//! opening new ones faster than woken workers took them, left a request queued, unanswered,
//! until another connection ended (20 s later, on a busy machine).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// What the handler is given: the method, the path without its leading `/`, the headers.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    headers: hyper::HeaderMap,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// The answer: a status, headers, a body (left out for HEAD by the server).
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// Starts the server on a port of its own, answering with the handler `make` returns for
/// that port (an answer may name its own address); it runs until the test process ends.
pub(crate) fn start<H>(make: impl FnOnce(u16) -> H) -> u16
where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    let handler: Arc<std::sync::OnceLock<Arc<Handler>>> = Arc::default();
    let shared = Arc::clone(&handler);
    let port = crate::harness::accept_on_thread(move |stream| {
        let handler = Arc::clone(shared.get().expect("handler set before the first request"));
        async move {
            let service = service_fn(move |request: hyper::Request<_>| {
                let handler = Arc::clone(&handler);
                async move { answer(&handler, request).await }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    });
    // No one knows the port before it is returned, so no connection comes before this.
    let answering: Arc<Handler> = Arc::new(make(port));
    assert!(handler.set(answering).is_ok(), "the handler is set once");
    port
}

async fn answer(
    handler: &Arc<Handler>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let request = Request {
        method: request.method().to_string(),
        path: request.uri().path().trim_start_matches('/').to_string(),
        headers: request.headers().clone(),
    };
    let handler = Arc::clone(handler);
    let reply = tokio::task::spawn_blocking(move || handler(&request))
        .await
        .expect("handler");
    let mut response = hyper::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::new(Bytes::from(reply.body)))
        .expect("response"))
}
