//! A streamed answer served by hyper as the API server serves it, read raw from a socket:
//! a producer's error must not look like the end of the body.

use std::convert::Infallible;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{stream, try_stream, Body, TryChanWriter};

/// Serves `body` once on a loopback socket; returns every byte the client read until the
/// server closed the connection.
async fn serve(body: Body) -> Vec<u8> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let body = std::sync::Mutex::new(Some(body));
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        let svc = hyper::service::service_fn(move |_req| {
            let b = body
                .lock()
                .ok()
                .and_then(|mut b| b.take())
                .unwrap_or(Body::Full(None));
            async move { Ok::<_, Infallible>(hyper::Response::new(b)) }
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(s), svc)
            .await;
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    let _ = server.await;
    out
}

#[tokio::test]
async fn an_error_midway_aborts_the_chunked_body() {
    let (tx, resp) = try_stream("application/x-tar");
    let fail = tx.clone();
    let producer = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut w = TryChanWriter(tx);
        w.write_all(b"part-of-a-tar").expect("send");
        drop(w);
        TryChanWriter::fail(&fail, "reading etc/shadow: permission denied".into());
    });
    let out = serve(resp.into_body()).await;
    producer.await.expect("producer");
    let text = String::from_utf8_lossy(&out);
    // hyper may drop the connection before even the head is flushed: also an error.
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    // (What was sent before the error may or may not be flushed before hyper drops the
    // connection; either way the transfer is broken.)
    // A complete chunked body ends with the zero-length last chunk; without it the client
    // (docker's Go http) reports an unexpected EOF instead of a short, valid-looking tar.
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the body ended normally: {text:?}"
    );
}

#[tokio::test]
async fn a_finished_stream_ends_normally() {
    let (tx, resp) = stream("application/x-tar");
    tx.send(Bytes::from_static(b"whole")).await.expect("send");
    drop(tx);
    let out = serve(resp.into_body()).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.ends_with("0\r\n\r\n"), "{text:?}");
}
