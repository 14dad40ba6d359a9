//! One port's connections, served with hyper directly rather than `axum::serve`, which sets no
//! timer (so no header timeout: idle and half-sent connections stayed open for good) and waits
//! for every connection at shutdown (so one slow client held SIGTERM up without bound).
//!
//! - Header timeout: hyper's `header_read_timeout`, whose timer starts whenever the connection
//!   waits for a request head: at its opening and again after each answer. So it is both the
//!   limit on a slow head and the keep-alive idle timeout (hyper has one timer for both).
//! - Body timeout: in the layers (`layers::body_deadline`), which see the body.
//! - Shutdown: stop accepting, ask every connection to finish (idle ones close at once, busy
//!   ones after their answer), then close whatever is still open after the drain period.

use std::io;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Headers hyper parses before answering 431 itself (with no body): above
/// `layers::MAX_HEADERS`, so that a request with too many headers gets the layers' JSON 431.
const PARSER_MAX_HEADERS: usize = 256;

/// Connection limits of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Longest a connection may wait for a whole request head, from its opening or its
    /// previous answer: the header timeout and the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// Longest shutdown waits for open connections before closing them.
    pub drain_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` is cancelled, then drains (see the module).
pub async fn serve_port(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    let port = listener.local_addr()?;
    let closing = CancellationToken::new();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            // Reap finished connections as they end, so the set holds open ones only.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = TowerToHyperService::new(router.clone());
                    conns.spawn(connection(stream, service, limits, closing.clone()));
                }
                // A connection reset before it was accepted concerns that client only; running
                // out of file descriptors passes with time: wait rather than spin.
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    tracing::warn!(%port, error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    closing.cancel();
    let drained =
        tokio::time::timeout(limits.drain_timeout, async { while conns.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!(%port, open = conns.len(), drain = ?limits.drain_timeout,
            "closing the connections still open after the drain period");
        conns.shutdown().await;
    }
    Ok(())
}

/// One connection, until it ends or, once `closing`, until its request in progress is answered.
async fn connection(
    stream: tokio::net::TcpStream,
    service: TowerToHyperService<Router>,
    limits: ConnLimits,
    closing: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(PARSER_MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Timeouts, resets and malformed requests are the client's business; debug level only.
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended");
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
