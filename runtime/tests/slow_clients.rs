//! Issue 19, defect 3: idle connections, half-sent heads and half-sent bodies stayed open for
//! good, and one slow body held shutdown up. Raw TCP clients against a real server on port 0:
//! each is closed within its timeout (generous margins: these test limits, not speed), and
//! shutdown finishes within the drain period whatever the clients do.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use dyce_runtime::server::Server;
use dyce_runtime::service::ServeConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HEADER: Duration = Duration::from_secs(1);
const BODY: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_secs(1);
/// Added to a timeout for the longest it may take to act on it on a loaded machine.
const MARGIN: Duration = Duration::from_secs(3);

struct Running {
    data: SocketAddr,
    admin: SocketAddr,
    stop: CancellationToken,
    run: JoinHandle<Result<(), dyce_runtime::service::ServeError>>,
}

async fn start(cfg: ServeConfig) -> Running {
    let (bundle, _) = tiny_bundle(2, vec![]);
    let cfg = ServeConfig { threads: Some(1), max_batch: 2, ..cfg };
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = Server::new(bundle, &cfg, data, admin).unwrap();
    let (data, admin) = srv.local_addrs().unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn(srv.run(stop.clone()));
    Running { data, admin, stop, run }
}

fn limits() -> ServeConfig {
    ServeConfig { header_timeout: HEADER, body_timeout: BODY, drain_timeout: DRAIN, ..Default::default() }
}

/// Reads until the server closes the connection; what it sent and when it closed. Blocking
/// (std sockets keep the test free of tokio's io-util): call it off the async workers.
fn until_closed(stream: &mut TcpStream, start: Instant, within: Duration) -> (Duration, String) {
    let mut got = Vec::new();
    let deadline = start + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "still open after {within:?}; got {:?}", String::from_utf8_lossy(&got));
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    (start.elapsed(), String::from_utf8_lossy(&got).into_owned())
}

/// `until_closed` on a blocking thread.
async fn closed(mut stream: TcpStream, start: Instant, within: Duration) -> (Duration, String) {
    tokio::task::spawn_blocking(move || until_closed(&mut stream, start, within)).await.unwrap()
}

fn connect(addr: SocketAddr, send: &[u8]) -> (TcpStream, Instant) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(send).unwrap();
    (s, Instant::now())
}

/// The first answer on `s` (at most 1 KiB).
async fn answer(mut s: TcpStream) -> (TcpStream, String) {
    tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 1024];
        s.set_read_timeout(Some(MARGIN)).unwrap();
        let n = s.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        (s, text)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_heads_are_closed_after_the_header_timeout() {
    let r = start(limits()).await;
    let cases: Vec<(&str, SocketAddr, &[u8])> = vec![
        ("idle, data port", r.data, b""),
        ("idle, admin port", r.admin, b""),
        ("half a head, data port", r.data, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"),
        ("half a head, admin port", r.admin, b"GET /v1/config HTTP/1.1\r\nHo"),
    ];
    let mut open = Vec::new();
    for (what, addr, bytes) in cases {
        open.push((what, connect(addr, bytes)));
    }
    // Many idle connections at once go the same way.
    for _ in 0..200 {
        open.push(("one of 200 idle", connect(r.data, b"")));
    }
    for (what, (s, t0)) in open {
        let (after, got) = closed(s, t0, HEADER + MARGIN).await;
        if !what.starts_with("one of") {
            eprintln!("{what}: closed after {after:?} (header timeout {HEADER:?})");
        }
        assert!(after >= HEADER - Duration::from_millis(100), "{what}: closed after {after:?}");
        assert!(!got.contains("200 OK"), "{what}: {got}");
    }
    r.stop.cancel();
    r.run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_closed_when_idle() {
    let r = start(limits()).await;
    let (s, _) = connect(r.data, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n");
    let (s, first) = answer(s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let (after, got) = closed(s, Instant::now(), HEADER + MARGIN).await;
    eprintln!("kept-alive connection closed {after:?} after its answer (header timeout {HEADER:?})");
    assert!(after >= HEADER - Duration::from_millis(100) && got.is_empty(), "{after:?} {got}");
    r.stop.cancel();
    r.run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_bodies_get_408_after_the_body_timeout() {
    let r = start(limits()).await;
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"in")
    };
    let cases = [
        ("inference", r.data, head("/v2/models/tiny/infer")),
        ("classify", r.data, head("/v1/classify")),
        ("repository index", r.data, head("/v2/repository/index")),
        ("config switch", r.admin, head("/v1/config").replace("POST", "PUT")),
    ];
    let mut open = Vec::new();
    for (what, addr, req) in cases {
        open.push((what, connect(addr, req.as_bytes())));
    }
    for (what, (s, t0)) in open {
        let (after, got) = closed(s, t0, BODY + MARGIN).await;
        eprintln!("{what}: 408 and closed after {after:?} (body timeout {BODY:?})");
        assert!(after >= BODY - Duration::from_millis(100), "{what}: closed after {after:?}");
        assert!(got.starts_with("HTTP/1.1 408"), "{what}: {got}");
        assert!(got.contains("connection: close") && got.contains("application/json"), "{what}: {got}");
        assert!(
            got.contains(r#""error":"the request body did not arrive within the body timeout of 2s""#),
            "{what}: {got}"
        );
    }
    r.stop.cancel();
    r.run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_within_the_drain_period_despite_slow_clients() {
    // Timeouts far longer than the drain period: only the drain can end these connections.
    let long = Duration::from_secs(120);
    let r = start(ServeConfig {
        header_timeout: long,
        body_timeout: long,
        drain_timeout: DRAIN,
        ..Default::default()
    })
    .await;
    let body = b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{";
    let mut clients = vec![
        connect(r.data, body).0,
        connect(r.data, b"GET /v2/health/live HTTP/1.1\r\n").0,
        connect(r.admin, b"").0,
    ];
    // A served request on a connection kept alive: closed at once by the drain.
    let (alive, _) = connect(r.admin, b"GET /v1/config HTTP/1.1\r\nHost: x\r\n\r\n");
    let (alive, first) = answer(alive).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    clients.push(alive);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    r.stop.cancel();
    tokio::time::timeout(DRAIN + MARGIN, r.run)
        .await
        .expect("shutdown within the drain period")
        .unwrap()
        .unwrap();
    eprintln!("shutdown with 4 slow clients took {:?} (drain period {DRAIN:?})", t0.elapsed());
    assert!(t0.elapsed() < DRAIN + MARGIN, "{:?}", t0.elapsed());
    for c in clients {
        closed(c, t0, DRAIN + MARGIN).await;
    }
    assert!(TcpStream::connect(r.data).is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_a_json_431() {
    let r = start(limits()).await;
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(40 << 10));
    for (what, extra) in [("150 headers", many), ("a 40 KiB header", big)] {
        let req = format!("GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
        let (s, t0) = connect(r.data, req.as_bytes());
        let (_, got) = closed(s, t0, MARGIN).await;
        assert!(got.starts_with("HTTP/1.1 431"), "{what}: {got}");
        assert!(
            got.contains("application/json") && got.contains("is over the limits of 100 headers"),
            "{what}: {got}"
        );
    }
    r.stop.cancel();
    r.run.await.unwrap().unwrap();
}
