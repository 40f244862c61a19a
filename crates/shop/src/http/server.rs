//! The accept loop: HTTP/1.1 connections served by hyper, bounded in number and in
//! how long a client may hold one without asking anything.
//!
//! - A request's head (request line and headers) must arrive within the header read
//!   timeout: on a new connection counted from the accept, on a kept-alive one from
//!   the head's first byte. A client trickling header bytes is disconnected.
//! - A kept-alive connection waiting for its next request is closed after the
//!   keep-alive timeout.
//! - At most `max_connections` are served at once; further ones wait in the listen
//!   backlog (the accept waits for a slot) until one closes.
//!
//! Why not hyper's own `header_read_timeout`: its clock starts whenever the
//! connection waits for a head, idle time included, so it would also close every
//! kept-alive connection at the header timeout. Here one small state per connection
//! (fed by its reads, writes and requests) tells which clock runs.
//!
//! On shutdown the loop stops accepting, every connection finishes the request it is
//! serving and closes, and [`serve`] returns when the last one has.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets every open
/// connection finish its request and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        tokio::spawn(connection(
            stream,
            remote,
            app.clone(),
            limits,
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    // Every slot back: every connection closed.
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}

/// A failed accept: a connection that died in the backlog is skipped; anything else
/// (out of file descriptors, most likely) is logged and retried after a pause, so
/// the loop does not spin while nothing can be accepted.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection until it closes, times out or is drained by a shutdown.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _open = OpenConnection::count();
    let activity = Arc::new(Activity::new(limits));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let serving = requests.request_started();
        req.extensions_mut().insert(ConnectInfo(remote));
        let app = app.clone();
        async move {
            let res: Result<axum::response::Response, Infallible> =
                app.oneshot(req.map(Body::new)).await;
            drop(serving);
            res
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // the deadlines are kept here (see the module's doc), not by hyper
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = activity.deadline();
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if activity.deadline().is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%remote, "closing a connection that sent no request in time");
                    return;
                }
            }
            () = activity.changed.notified() => {}
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Counts the connection in `http_connections_open` while it lives.
struct OpenConnection;

impl OpenConnection {
    fn count() -> OpenConnection {
        metrics::gauge!("http_connections_open").increment(1.0);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

/// Which clock runs on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head, since then.
    Head(Instant),
    /// Kept alive between requests, since the last byte went either way.
    Idle(Instant),
    /// Serving this many requests; no clock runs (the request timeout bounds them).
    Busy(usize),
}

struct Activity {
    phase: Mutex<Phase>,
    /// Woken when the deadline may have moved earlier.
    changed: Notify,
    limits: Limits,
}

impl Activity {
    fn new(limits: Limits) -> Activity {
        Activity {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
            limits,
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection is to be closed unless something happens first.
    fn deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Head(since) => Some(since + self.limits.header_read_timeout),
            Phase::Idle(since) => Some(since + self.limits.keepalive_timeout),
            Phase::Busy(_) => None,
        }
    }

    /// Bytes came in: on an idle connection, a new head has begun.
    fn read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// Bytes went out: an idle connection still writing an answer is not idle.
    fn wrote(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Idle(Instant::now());
        }
    }

    fn request_started(self: &Arc<Self>) -> Serving {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
        Serving(self.clone())
    }
}

/// A request being served; when it is done (or dropped), the idle clock starts.
struct Serving(Arc<Activity>);

impl Drop for Serving {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        drop(phase);
        self.0.changed.notify_one();
    }
}

/// The connection's socket, telling [`Activity`] about the bytes that move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            max_connections: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_that_runs_follows_the_connection() {
        let a = Arc::new(Activity::new(limits()));
        let start = Instant::now();
        // new: the head must come within the header timeout of the accept
        assert_eq!(a.deadline(), Some(start + Duration::from_secs(10)));
        a.read();
        assert_eq!(a.deadline(), Some(start + Duration::from_secs(10)));
        // serving: no clock
        let serving = a.request_started();
        tokio::time::advance(Duration::from_secs(30)).await;
        a.read(); // the body
        assert_eq!(a.deadline(), None);
        // answered: idle until the keep-alive timeout; writing the answer is activity
        drop(serving);
        let idle = Instant::now();
        assert_eq!(a.deadline(), Some(idle + Duration::from_secs(75)));
        tokio::time::advance(Duration::from_secs(5)).await;
        a.wrote();
        assert_eq!(
            a.deadline(),
            Some(idle + Duration::from_secs(80)),
            "the idle clock restarts at the last byte written"
        );
        // a next head's first byte starts the header clock
        tokio::time::advance(Duration::from_secs(20)).await;
        a.read();
        assert_eq!(a.deadline(), Some(Instant::now() + Duration::from_secs(10)));
        // more bytes of the same head do not push it back
        tokio::time::advance(Duration::from_secs(4)).await;
        a.read();
        assert_eq!(a.deadline(), Some(Instant::now() + Duration::from_secs(6)));
    }
}
