//! The HTTP accept loop: hyper's HTTP/1 server over the listener, with what
//! `axum::serve` does not offer — a header read timeout (a client that
//! trickles its headers is closed), each request tagged with its peer
//! address (for per-IP limits), and a two-step stop: stop accepting first,
//! close the connections later, so requests already in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tower::Service;

/// How long, at the stop, a connection that has sent no request yet may
/// take to send its first one before it is closed.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// A listener being served.
pub(crate) struct Serving {
    stop: watch::Sender<bool>,
    /// Every connection task holds a sender; `recv` ends when all are gone.
    open: mpsc::Receiver<()>,
}

impl Serving {
    /// Starts accepting on `listener`.
    pub(crate) fn start(listener: TcpListener, app: Router, header_timeout: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (alive, open) = mpsc::channel(1);
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        tokio::spawn(accept(listener, app, http, stopped, alive));
        Self { stop, open }
    }

    /// Stops accepting (the listener closes) and asks every connection to
    /// finish: a request in flight completes and gets its answer, an idle
    /// keep-alive connection closes. Websockets are not HTTP connections
    /// any more; the Socket.IO layer closes those.
    pub(crate) fn stop_accepting(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until every connection has closed.
    pub(crate) async fn closed(&mut self) {
        while self.open.recv().await.is_some() {}
    }
}

async fn accept(
    listener: TcpListener,
    app: Router,
    http: http1::Builder,
    mut stopped: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let watcher = stopped.clone();
    let connection = |last: bool| {
        let mut http = http.clone();
        if last {
            // Served to the end of one request, then closed.
            http.keep_alive(false);
        }
        Connection {
            app: app.clone(),
            http,
            stopped: (!last).then(|| watcher.clone()),
            _alive: alive.clone(),
        }
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tokio::spawn(connection(false).serve(tcp, peer));
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Connections the kernel completed before the stop are already sending
    // their request: serve each one request instead of resetting them. The
    // backlog is drained with the accept syscall itself: tokio's readiness
    // flag may not have caught up with connections that arrived since the
    // last poll (on a busy machine, often), and closing the listener would
    // reset them after their client had connected.
    match listener.into_std() {
        Ok(std_listener) => {
            // Until WouldBlock (the backlog is empty) or any other error.
            while let Ok((tcp, peer)) = std_listener.accept() {
                match adopt(tcp) {
                    Ok(tcp) => {
                        tokio::spawn(connection(true).serve(tcp, peer));
                    }
                    Err(e) => tracing::debug!(error = %e, "a last connection could not be served"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "the backlog could not be drained"),
    }
    tracing::debug!("listener closed");
}

/// A std stream from the (non-blocking) listener, for tokio.
fn adopt(tcp: std::net::TcpStream) -> std::io::Result<TcpStream> {
    tcp.set_nonblocking(true)?;
    TcpStream::from_std(tcp)
}

struct Connection {
    app: Router,
    http: http1::Builder,
    /// `None` for a connection taken from the backlog after the stop.
    stopped: Option<watch::Receiver<bool>>,
    _alive: mpsc::Sender<()>,
}

impl Connection {
    async fn serve(mut self, tcp: TcpStream, peer: SocketAddr) {
        // Signaling is many small frames: Nagle's algorithm would hold each
        // one back waiting for the previous one's ACK (tens of milliseconds).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let app = self.app.clone();
        // Whether a request has reached the router on this connection.
        let (started, mut first) = watch::channel(false);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            started.send_replace(true);
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            // The router never fails (`Infallible`): errors are responses.
            async move { app.call(req.map(Body::new)).await }
        });
        let conn = self
            .http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        tokio::pin!(conn);
        let stopping = async {
            match &mut self.stopped {
                Some(stopped) => {
                    if !*stopped.borrow_and_update() {
                        let _ = stopped.changed().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            res = conn.as_mut() => return log_end(res),
            () = stopping => {}
        }
        // Accepted just before the stop: its first request is on its way,
        // and hyper would close a connection that has not sent one yet.
        if !*first.borrow() {
            let arrived = tokio::time::timeout(FIRST_REQUEST_WAIT, first.wait_for(|s| *s));
            tokio::select! {
                res = conn.as_mut() => return log_end(res),
                _ = arrived => {}
            }
        }
        conn.as_mut().graceful_shutdown();
        log_end(conn.await);
    }
}

fn log_end(res: Result<(), hyper::Error>) {
    if let Err(e) = res {
        // Header timeouts, resets, garbage: the client's problem, not ours.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// REST requests being handled now: the graceful stop waits for them.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

pub(crate) struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once no request is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
