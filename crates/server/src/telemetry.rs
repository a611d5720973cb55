//! Logs (tracing) and metrics (Prometheus text at `/metrics`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

pub const SOCKETS_CONNECTED: &str = "consultd_sockets_connected";
pub const SOCKET_CONNECTIONS: &str = "consultd_socket_connections_total";
pub const SOCKET_REFUSED: &str = "consultd_socket_refused_total";
pub const SOCKET_EVENTS: &str = "consultd_socket_events_total";
pub const HTTP_REQUESTS: &str = "consultd_http_requests_total";
pub const CALL_TRANSITIONS: &str = "consultd_call_transitions_total";
pub const HTTP_DURATION: &str = "consultd_http_request_duration_seconds";
pub const RELAYED: &str = "consultd_signals_relayed_total";
pub const RELAY_DROPPED: &str = "consultd_signals_dropped_total";
pub const SOCKETS_OVERFLOWED: &str = "consultd_sockets_overflowed_total";
pub const CALLS_ABANDONED: &str = "consultd_calls_abandoned_total";
pub const CHAT_TRANSITIONS: &str = "consultd_chat_transitions_total";
pub const CHAT_MESSAGES: &str = "consultd_chat_messages_total";
pub const BUS_MESSAGES: &str = "consultd_bus_messages_total";
pub const BUS_GAPS: &str = "consultd_bus_gaps_total";
pub const BUS_LAG: &str = "consultd_bus_lag_seconds";
pub const ROOM_STREAM_LENGTH: &str = "consultd_room_stream_length";
pub const REDIS_UP: &str = "consultd_redis_up";
pub const NODES_REAPED: &str = "consultd_nodes_reaped_total";
pub const PEERJS_PEERS: &str = "consultd_peerjs_peers";
pub const PEERJS_RELAYED: &str = "consultd_peerjs_relayed_total";
pub const PEERJS_REFUSED: &str = "consultd_peerjs_refused_total";
pub const PEERJS_EXPIRED: &str = "consultd_peerjs_expired_total";
pub const PEERJS_DROPPED: &str = "consultd_peerjs_dropped_total";
pub const WEBHOOK_PENDING: &str = "consultd_webhook_outbox_pending";
pub const WEBHOOK_DEAD: &str = "consultd_webhook_outbox_dead";
pub const WEBHOOK_DELIVERIES: &str = "consultd_webhook_deliveries_total";

/// Installs the log subscriber. A second call (tests start several servers
/// in one process) keeps the first subscriber.
pub fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // stderr: stdout is for command output (`consultd token`, `consultd migrate`).
    // Colours only for a person at a terminal: a file, a pipe or a log
    // collector gets plain text (NO_COLOR is honoured too).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder: the `metrics` macros write to one
/// global recorder, so every server in the process shares this handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_DURATION.to_owned()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    handle
                }
                // Someone else installed a global recorder first (an embedding
                // application): keep a detached one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_gauge!(SOCKETS_CONNECTED, "Socket.IO sockets connected now");
    metrics::describe_counter!(SOCKET_CONNECTIONS, "Socket.IO connections accepted");
    metrics::describe_counter!(SOCKET_REFUSED, "Socket.IO connections refused, by reason");
    metrics::describe_counter!(SOCKET_EVENTS, "Socket.IO events received, by event name");
    metrics::describe_counter!(HTTP_REQUESTS, "REST requests, by method, route and status");
    metrics::describe_counter!(
        CALL_TRANSITIONS,
        "Call session transitions committed, by the status reached"
    );
    metrics::describe_counter!(RELAYED, "Signaling messages delivered to a peer socket");
    metrics::describe_counter!(
        RELAY_DROPPED,
        "Signaling messages not delivered: the receiver's send queue was full or closed"
    );
    metrics::describe_counter!(
        SOCKETS_OVERFLOWED,
        "Sockets closed because their send queue was full (a client that stopped reading)"
    );
    metrics::describe_counter!(
        CALLS_ABANDONED,
        "Calls and tutoring sessions ended because neither participant stayed connected"
    );
    metrics::describe_counter!(
        CHAT_TRANSITIONS,
        "Chat session status changes, by new status"
    );
    metrics::describe_counter!(CHAT_MESSAGES, "Chat messages stored (resends not counted)");
    metrics::describe_counter!(
        BUS_MESSAGES,
        "Bus messages heard from the nodes (this one included), with several nodes"
    );
    metrics::describe_gauge!(
        BUS_LAG,
        "How old the last bus message was when this node heard it (commit to delivery)"
    );
    metrics::describe_counter!(
        BUS_GAPS,
        "Times the bus connection was lost and came back (this node resynced its sockets)"
    );
    metrics::describe_gauge!(
        ROOM_STREAM_LENGTH,
        "Entries in the Redis stream of room changes (bounded near 100,000), with several nodes"
    );
    metrics::describe_gauge!(
        REDIS_UP,
        "1 while Redis answers this node's heartbeat and writes, 0 while it does not"
    );
    metrics::describe_counter!(
        NODES_REAPED,
        "Silent nodes whose sockets this node took out of their rooms"
    );
    metrics::describe_gauge!(
        WEBHOOK_PENDING,
        "Webhook deliveries waiting in the outbox (every node's), refreshed every 5 s"
    );
    metrics::describe_gauge!(
        WEBHOOK_DEAD,
        "Webhook deliveries given up on after WEBHOOK_GIVE_UP, kept in the outbox"
    );
    metrics::describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook attempts made by this node, by result: delivered, failed (retried), dead"
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "REST request latency"
    );
}
