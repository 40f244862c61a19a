//! Connections are bounded: a client that sends no request, or trickles its request's
//! head, is disconnected after the configured timeouts; a kept-alive connection is
//! closed after the keep-alive timeout; at most `max_connections` are served at once.
//! None of it keeps a well-behaved client from being served. (Connection handling
//! does not touch the database: these run on SQLite only.)

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, spawn_app_with};

const REQUEST: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: shop\r\n\r\n";

/// A guard on every wait: a test that would hang fails instead.
const GUARD: Duration = Duration::from_secs(20);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection (EOF or reset); returns what came.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server never closed the connection");
    got
}

/// Sends [`REQUEST`] and reads its whole answer (the connection stays open).
async fn ask(stream: &mut TcpStream) -> String {
    stream.write_all(REQUEST).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(GUARD, async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer was whole");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .expect("content-length");
                if body.len() >= length {
                    return;
                }
            }
        }
    })
    .await
    .expect("an answer");
    String::from_utf8_lossy(&got).into_owned()
}

/// A client that opens a new connection for each request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(GUARD)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_connections_are_closed_while_others_are_served() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.header_read_timeout_secs = 1;
        c.keepalive_timeout_secs = 1;
    })
    .await;
    // a connection that never says anything
    let mut silent = connect(&app).await;
    // a connection whose head never ends: a header line every 200 ms
    let trickle = connect(&app).await;
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let trickler = tokio::spawn(async move {
        let mut sent = 0;
        if trickle_write
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: shop\r\n")
            .await
            .is_err()
        {
            return sent;
        }
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if trickle_write
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        sent
    });
    // a connection kept alive after one answer
    let mut kept = connect(&app).await;
    assert!(ask(&mut kept).await.starts_with("HTTP/1.1 200"));

    // meanwhile a well-behaved client is served, again and again
    let client = fresh_client();
    for _ in 0..5 {
        let res = client.get(app.url("/health/live")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(read_until_closed(&mut silent).await.is_empty());
    assert!(read_until_closed(&mut kept).await.is_empty());
    let mut got = Vec::new();
    let closed = tokio::time::timeout(GUARD, trickle_read.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "the trickling connection was never closed");
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "a head that never ended was not served"
    );
    let sent = trickler.await.unwrap();
    assert!(
        sent < 100,
        "the server closed the connection before the trickle ended"
    );

    let res = client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "still serving afterwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_clock_starts_at_a_heads_first_byte_not_while_idle() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.header_read_timeout_secs = 1;
        c.keepalive_timeout_secs = 60;
    })
    .await;
    let mut stream = connect(&app).await;
    assert!(ask(&mut stream).await.starts_with("HTTP/1.1 200"));
    // idle for longer than the header timeout: still open, and serves the next request
    let mut buf = [0u8; 16];
    let idle = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
    assert!(
        idle.is_err(),
        "an idle kept-alive connection was closed early: {idle:?}"
    );
    assert!(ask(&mut stream).await.starts_with("HTTP/1.1 200"));
    // a next head that is started and never finished is cut at the header timeout,
    // long before the keep-alive timeout
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut stream).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_connections_are_served_at_once() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.max_connections = 2;
        c.header_read_timeout_secs = 60;
        c.keepalive_timeout_secs = 60;
    })
    .await;
    // two connections, each served once and held open
    let mut first = connect(&app).await;
    assert!(ask(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = connect(&app).await;
    assert!(ask(&mut second).await.starts_with("HTTP/1.1 200"));
    // a third is not served while they are open...
    let waiting = tokio::time::timeout(
        Duration::from_secs(2),
        fresh_client().get(app.url("/health/live")).send(),
    )
    .await;
    assert!(
        waiting.is_err(),
        "a third connection was served beyond the limit: {waiting:?}"
    );
    // ...and is as soon as one of them closes
    drop(first);
    let res = fresh_client()
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("served once a connection closed");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(ask(&mut second).await.starts_with("HTTP/1.1 200"));
}
