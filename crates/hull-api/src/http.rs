//! The HTTP plumbing under the handlers: a body that is either whole or a stream fed
//! from a channel (logs, wait, events), JSON answers, the request's path and query.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::error::ApiError;

/// A response body: one buffer, or chunks as a producer sends them (ends when it drops
/// its sender), or chunks that may end in an error ([`try_stream`]).
pub(crate) enum Body {
    Full(Option<Bytes>),
    Chan(mpsc::Receiver<Bytes>),
    TryChan(mpsc::Receiver<io::Result<Bytes>>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Chan(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
            Body::TryChan(rx) => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    /// Exact for a whole body, so hyper sends a Content-Length instead of chunks.
    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(b) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::Chan(_) | Body::TryChan(_) => hyper::body::SizeHint::default(),
        }
    }
}

pub(crate) type Resp = Response<Body>;

fn build(status: StatusCode, ctype: Option<&str>, body: Body) -> Resp {
    let mut b = Response::builder()
        .status(status)
        .header("Api-Version", crate::API_VERSION)
        .header("Docker-Experimental", "false")
        .header("Ostype", "linux")
        .header("Server", concat!("hull/", env!("CARGO_PKG_VERSION")));
    if let Some(c) = ctype {
        b = b.header("Content-Type", c);
    }
    // Only our own constant header values go in: the builder cannot fail.
    b.body(body)
        .unwrap_or_else(|_| Response::new(Body::Full(None)))
}

pub(crate) fn json(status: StatusCode, v: &impl serde::Serialize) -> Resp {
    let mut data = serde_json::to_vec(v).unwrap_or_default();
    data.push(b'\n');
    build(
        status,
        Some("application/json"),
        Body::Full(Some(data.into())),
    )
}

pub(crate) fn ok_json(v: &impl serde::Serialize) -> Resp {
    json(StatusCode::OK, v)
}

pub(crate) fn text(status: StatusCode, s: &'static str) -> Resp {
    build(
        status,
        Some("text/plain; charset=utf-8"),
        Body::Full(Some(Bytes::from_static(s.as_bytes()))),
    )
}

pub(crate) fn empty(status: StatusCode) -> Resp {
    build(status, None, Body::Full(None))
}

/// A streamed answer: what the producer sends on the returned channel, in order.
pub(crate) fn stream(ctype: &str) -> (mpsc::Sender<Bytes>, Resp) {
    let (tx, rx) = mpsc::channel(64);
    (tx, build(StatusCode::OK, Some(ctype), Body::Chan(rx)))
}

/// The producer's end of a [`try_stream`].
pub(crate) type TrySender = mpsc::Sender<io::Result<Bytes>>;

/// A streamed answer whose producer can fail after the 200 went out (a tar: export, save,
/// archive). Sending an `Err` makes hyper abort the connection without the chunked body's
/// last chunk, so the client sees a broken transfer; merely dropping the sender would end
/// the body normally and `docker export` would exit 0 with a truncated tar.
pub(crate) fn try_stream(ctype: &str) -> (TrySender, Resp) {
    let (tx, rx) = mpsc::channel(64);
    (tx, build(StatusCode::OK, Some(ctype), Body::TryChan(rx)))
}

/// A `Write` on the blocking pool feeding a [`try_stream`]; [`TryChanWriter::fail`] on a
/// clone of its sender ends the answer with an error.
pub(crate) struct TryChanWriter(pub TrySender);

impl TryChanWriter {
    /// Ends the stream `tx` with an error (logged by the caller); best effort: the client
    /// may have gone.
    pub(crate) fn fail(tx: &TrySender, msg: String) {
        let _ = tx.blocking_send(Err(io::Error::other(msg)));
    }
}

impl io::Write for TryChanWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(b)))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A producer's end of a streamed JSON answer (pull, push, load, build progress), used
/// from the blocking pool: one JSON object a line, as docker's `jsonmessage` stream.
pub(crate) struct JsonLines(pub mpsc::Sender<Bytes>);

impl JsonLines {
    /// Sends `v`; false once the client has gone.
    pub(crate) fn send(&self, v: &serde_json::Value) -> bool {
        let mut data = serde_json::to_vec(v).unwrap_or_default();
        data.push(b'\n');
        self.0.blocking_send(data.into()).is_ok()
    }
    pub(crate) fn status(&self, s: &str) -> bool {
        self.send(&serde_json::json!({ "status": s }))
    }
    /// An error after the 200 went out: docker's clients print it and fail.
    pub(crate) fn error(&self, m: &str) {
        self.send(&serde_json::json!({"errorDetail": {"message": m}, "error": m}));
    }
}

/// The largest JSON request body read (container create with its whole config is a few KiB;
/// docker's own daemon has no cap, but holding any size in memory lets one client exhaust it).
pub(crate) const MAX_JSON_BODY: usize = 4 << 20;

/// The parts of a request the handlers use: the path without its `/v1.xx` prefix split
/// into segments, and the query.
pub(crate) struct Req {
    pub method: hyper::Method,
    pub segs: Vec<String>,
    pub query: HashMap<String, String>,
    /// Every key=value in order: a key may repeat (`changes=...&changes=...`).
    pub pairs: Vec<(String, String)>,
    pub body: Option<Incoming>,
    pub headers: hyper::HeaderMap,
    /// Kept for the hijacked endpoints (attach, exec start), which take over the connection.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Req {
    pub(crate) fn new(mut r: hyper::Request<Incoming>) -> Req {
        let upgrade = r.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
        let (parts, body) = r.into_parts();
        let path = parts.uri.path();
        let mut segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        // `/v1.41/containers/json` and `/containers/json` are the same endpoint.
        if segs
            .first()
            .is_some_and(|s| s.starts_with('v') && s[1..].parse::<f32>().is_ok())
        {
            segs.remove(0);
        }
        let pairs: Vec<(String, String)> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (query_decode(k), query_decode(v)),
                None => (query_decode(kv), String::new()),
            })
            .collect();
        let query = pairs.iter().cloned().collect();
        Req {
            method: parts.method,
            segs,
            query,
            pairs,
            body: Some(body),
            headers: parts.headers,
            upgrade,
        }
    }

    pub(crate) fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    /// Every value of a repeatable query parameter, in order (empty ones left out).
    pub(crate) fn all(&self, k: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean query parameter as docker reads them: `1`, `true`, `True` are true.
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("1" | "true" | "True" | "TRUE"))
    }

    pub(crate) fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.q(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad(format!("invalid value {v:?} for query parameter {k}"))),
        }
    }

    /// The whole request body, at most [`MAX_JSON_BODY`] bytes (the JSON bodies; the tar
    /// streams of build, load and archive go to a file instead, uncapped). Past the cap,
    /// announced by Content-Length or found while reading: 413, nothing more read.
    pub(crate) async fn bytes(&mut self) -> Result<Bytes, ApiError> {
        use http_body_util::BodyExt as _;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {} MiB, the limit for a JSON body",
                    MAX_JSON_BODY >> 20
                ),
            )
        };
        let Some(b) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let announced = self
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_JSON_BODY as u64) {
            return Err(too_large());
        }
        http_body_util::Limited::new(b, MAX_JSON_BODY)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    ApiError::bad(format!("cannot read the request body: {e}"))
                }
            })
    }

    /// The body as JSON of type `T`; an empty body is `T::default()`.
    pub(crate) async fn json<T: DeserializeOwned + Default>(&mut self) -> Result<T, ApiError> {
        let data = self.bytes().await?;
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&data)
            .map_err(|e| ApiError::bad(format!("invalid JSON in the request body: {e}")))
    }
}

/// A query key or value as Go's `url.ParseQuery` reads it: `+` is a space (docker-py,
/// hence docker-compose, sends `filters={"label":+[...]}`), then `%XX` escapes.
fn query_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// `%2F` → `/`; `+` stays (docker's router does not turn `+` into a space in paths).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod stream_tests;

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("a%2Fb%3Ac"), "a/b:c");
        assert_eq!(
            percent_decode("%7B%22label%22%3A%5B%5D%7D"),
            r#"{"label":[]}"#
        );
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("x%2"), "x%2");
        assert_eq!(super::query_decode("a+b%2B"), "a b+");
    }
}
