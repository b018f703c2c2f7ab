//! The HTTP/1 server of `serve` (and the demo's scaler): an accept loop over hyper with the
//! limits `axum::serve` does not offer (`[server]` config section, docs/configuration.md).
//!
//! - a connection cap: past `max_connections` a new connection gets a short 503 and is closed;
//! - a header-read timeout: a request head not complete within `header_read_timeout` of its
//!   first byte closes the connection (slow-header clients);
//! - an idle timeout: a keep-alive connection without a request for `idle_timeout` is closed;
//! - a bound on header bytes: a head over `max_header_bytes` gets 431, and the read buffer of a
//!   connection is bounded by it (hyper's default is ~400 KB per connection);
//! - graceful shutdown with a deadline: on shutdown the listener closes, connections without a
//!   request in progress close at once, requests in progress get their answer, and whatever is
//!   still open after `shutdown_grace` is closed.
//!
//! Both timeouts are watched here rather than by hyper's `header_read_timeout`, because hyper's
//! timer also runs while a keep-alive connection waits for its next request, so it cannot tell a
//! slow head from an idle connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// HTTP server limits (`[server]`). The defaults fit behind nginx, which sends a whole request
/// head at once and holds one connection per proxied request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Most connections served at once; more get a 503 and are closed.
    pub max_connections: usize,
    /// Time from a request head's first byte to its end; slower heads close the connection.
    #[serde(with = "crate::duration")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection without a request for this long is closed.
    #[serde(with = "crate::duration")]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// On shutdown, how long requests in progress may take before every connection is closed.
    #[serde(with = "crate::duration")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            // nginx's large_client_header_buffers default is 4 x 8k.
            max_header_bytes: 32 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// hyper's smallest read buffer.
const MIN_BUF: usize = 8192;
/// Connections answered 503 at the same time; past this a connection is closed unanswered.
const REFUSING_MAX: usize = 64;
/// The answer past the connection cap.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 21\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections\n";

impl ServerConfig {
    /// Problems of the values, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=100_000).contains(&self.max_connections) {
            p.push(format!(
                "server.max_connections: {} must be in 1..=100000",
                self.max_connections
            ));
        }
        if !(1024..=1 << 20).contains(&self.max_header_bytes) {
            p.push(format!(
                "server.max_header_bytes: {} must be in 1024..=1048576",
                self.max_header_bytes
            ));
        }
        for (key, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                p.push(format!("server.{key}: must be in 100ms..=1h"));
            }
        }
        if self.shutdown_grace > Duration::from_secs(300) {
            p.push("server.shutdown_grace: must be at most 5m".into());
        }
        p
    }
}

/// Serves `app` on `listener` until `shutdown`, then shuts down as the module doc says.
/// Handlers see the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: &ServerConfig,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Watched by `connection` (see the module doc).
        .header_read_timeout(None)
        .max_header_size(cfg.max_header_bytes)
        .max_buf_size(cfg.max_header_bytes.max(MIN_BUF));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING_MAX));
    let force = CancellationToken::new();
    let conns = TaskTracker::new();
    let limits = Limits {
        header_read_timeout: cfg.header_read_timeout,
        idle_timeout: cfg.idle_timeout,
    };
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: let connections finish, then retry.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let conn = Connection {
                    builder: Arc::clone(&builder),
                    app: app.clone(),
                    peer,
                    limits,
                    shutdown: shutdown.clone(),
                    force: force.clone(),
                };
                conns.spawn(async move {
                    conn.run(stream).await;
                    drop(permit);
                });
            }
            Err(_) => match Arc::clone(&refusing).try_acquire_owned() {
                Ok(permit) => {
                    tracing::debug!(%peer, "connection cap reached: 503");
                    conns.spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
                Err(_) => tracing::debug!(%peer, "connection cap reached: closed"),
            },
        }
    }
    drop(listener);
    conns.close();
    if tokio::time::timeout(cfg.shutdown_grace, conns.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = conns.len(),
            grace = %humantime::format_duration(cfg.shutdown_grace),
            "connections still open after the shutdown grace; closing them"
        );
        force.cancel();
        conns.wait().await;
    }
}

/// Answers 503 and closes, reading what the client sent so the close is not a reset.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

/// What a connection is doing, for its timeouts.
#[derive(Debug)]
struct Activity {
    /// Requests handed to the app and not answered yet.
    in_flight: u32,
    /// The last answer (or the accept).
    idle_since: Instant,
    /// First byte read while no request was in flight: a head is arriving.
    head_since: Option<Instant>,
}

/// A connection's activity and the wake-up of its watchdog when a head starts.
#[derive(Debug)]
struct Watched {
    activity: Mutex<Activity>,
    head_started: tokio::sync::Notify,
}

type Shared = Arc<Watched>;

fn lock(a: &Shared) -> std::sync::MutexGuard<'_, Activity> {
    a.activity.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Activity {
    /// When the connection must close if nothing changes; `None` while a request runs.
    fn deadline(&self, limits: Limits) -> Option<Instant> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match self.head_since {
            Some(t) => t + limits.header_read_timeout,
            None => self.idle_since + limits.idle_timeout,
        })
    }
}

/// Ends a request's in-flight mark when its handler finishes (or is dropped).
struct InFlight(Shared);

impl InFlight {
    fn begin(a: &Shared) -> InFlight {
        let mut g = lock(a);
        g.in_flight += 1;
        g.head_since = None;
        drop(g);
        InFlight(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut g = lock(&self.0);
        g.in_flight = g.in_flight.saturating_sub(1);
        g.idle_since = Instant::now();
    }
}

/// A TCP stream that marks the start of a request head on its first byte.
struct Tracked {
    inner: TcpStream,
    activity: Shared,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let mut g = lock(&self.activity);
            if g.in_flight == 0 && g.head_since.is_none() {
                g.head_since = Some(Instant::now());
                drop(g);
                // The watchdog sleeps until the idle deadline: bring its deadline forward.
                self.activity.head_started.notify_one();
            }
        }
        polled
    }
}

impl AsyncWrite for Tracked {
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

/// One accepted connection and what it needs.
struct Connection {
    builder: Arc<http1::Builder>,
    app: Router,
    peer: SocketAddr,
    limits: Limits,
    shutdown: CancellationToken,
    force: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let Connection {
            builder,
            app,
            peer,
            limits,
            shutdown,
            force,
        } = self;
        let activity: Shared = Arc::new(Watched {
            activity: Mutex::new(Activity {
                in_flight: 0,
                idle_since: Instant::now(),
                head_since: None,
            }),
            head_started: tokio::sync::Notify::new(),
        });
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let requests = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            let mark = InFlight::begin(&requests);
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let answer = app.oneshot(req.map(axum::body::Body::new)).await;
                drop(mark);
                answer
            }
        });
        let conn = builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut stopping = false;
        loop {
            let deadline = lock(&activity).deadline(limits);
            // While a request runs, look again after a header timeout.
            let wake = deadline.unwrap_or_else(|| Instant::now() + limits.header_read_timeout);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake) => {
                    let a = lock(&activity);
                    if a.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                        let why = if a.head_since.is_some() { "request head too slow" } else { "idle" };
                        tracing::debug!(%peer, why, "closing the connection");
                        return;
                    }
                }
                () = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    if lock(&activity).in_flight == 0 {
                        return;
                    }
                    // Answer the request in progress, then close.
                    conn.as_mut().graceful_shutdown();
                }
                () = activity.head_started.notified() => {}
                () = force.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_keys() {
        assert!(ServerConfig::default().problems().is_empty());
        let bad = ServerConfig {
            max_connections: 0,
            header_read_timeout: Duration::ZERO,
            idle_timeout: Duration::from_secs(7200),
            max_header_bytes: 10,
            shutdown_grace: Duration::from_secs(600),
        };
        let problems = bad.problems().join("\n");
        for key in [
            "server.max_connections",
            "server.header_read_timeout",
            "server.idle_timeout",
            "server.max_header_bytes",
            "server.shutdown_grace",
        ] {
            assert!(problems.contains(key), "{key} missing in {problems}");
        }
    }

    #[test]
    fn deadline_follows_the_connection_state() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
        };
        let t0 = Instant::now();
        let mut a = Activity {
            in_flight: 0,
            idle_since: t0,
            head_since: None,
        };
        assert_eq!(a.deadline(limits), Some(t0 + limits.idle_timeout));
        a.head_since = Some(t0 + Duration::from_secs(1));
        assert_eq!(a.deadline(limits), Some(t0 + Duration::from_secs(11)));
        a.in_flight = 1;
        assert_eq!(a.deadline(limits), None);
    }
}
