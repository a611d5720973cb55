//! Command line and configuration: every setting is a flag and an
//! environment variable, documented here and in docs/configuration.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// consultd: signaling and session server for consultation apps.
#[derive(Debug, Parser)]
#[command(name = "consultd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST API and Socket.IO (the default).
    Serve,
    /// Apply, roll back or list database migrations.
    Migrate {
        #[arg(value_enum, default_value_t = MigrateAction::Up)]
        action: MigrateAction,
        /// How many migrations `down` rolls back.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// Print a JWT signed with the configured key, to try the server without another backend.
    Token(TokenArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrateAction {
    Up,
    Down,
    Status,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(long)]
    pub sub: String,
    /// The role, e.g. doctor or patient; must be known to the role mapping.
    #[arg(long)]
    pub role: String,
    /// Display name (`name` claim).
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime, e.g. 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    #[value(name = "HS256", alias = "hs256")]
    Hs256,
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

/// The tokio scheduler the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeFlavor {
    /// One thread per core (or `WORKER_THREADS`); sockets spread over them.
    Multi,
    /// Everything on one thread: no cross-thread wake-ups; one core's worth.
    Current,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 4000;
pub const DEFAULT_DATA_DIR: &str = "consultd-data";
pub const DEFAULT_ROLE_CLAIM: &str = "role";
pub const DEFAULT_CORS_ORIGINS: &str = "*";
pub const DEFAULT_INVITE_TTL_SECS: u64 = 60;
pub const DEFAULT_SESSION_TTL_SECS: u64 = 60;
pub const DEFAULT_CHAT_DURATION_SECS: u64 = 30 * 60;
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_CHAT_CHARS: usize = 10_000;
pub const DEFAULT_EVENT_RATE: u32 = 100;
pub const DEFAULT_EVENT_BURST: u32 = 200;
pub const DEFAULT_REPLAY_MAX_MESSAGES: usize = 64;
pub const DEFAULT_REPLAY_MAX_BYTES: usize = 256 * 1024;
pub const DEFAULT_SOCKET_BUFFER: usize = 1024;
pub const DEFAULT_WS_READ_BUFFER: usize = 1024;
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 25;
pub const DEFAULT_PING_TIMEOUT_SECS: u64 = 20;
pub const DEFAULT_MAX_SOCKETS_PER_USER: usize = 20;
pub const DEFAULT_HANDSHAKE_RATE: u32 = 20;
pub const DEFAULT_HANDSHAKE_BURST: u32 = 60;
pub const DEFAULT_RATE_LIMIT_EXEMPT: &str = "127.0.0.0/8,::1/128";
pub const DEFAULT_REST_RATE: u32 = 20;
pub const DEFAULT_REST_BURST: u32 = 60;
pub const DEFAULT_ABANDON_SECS: u64 = 180;
pub const DEFAULT_PEERJS_PATH: &str = "/peerjs";
pub const DEFAULT_PEERJS_KEY: &str = "peerjs";
pub const DEFAULT_PEERJS_EXPIRE_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_PEERJS_ALIVE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_PEERJS_CONCURRENT_LIMIT: usize = 5_000;
pub const DEFAULT_PEERJS_TICKET_TTL_SECS: u64 = 300;
pub const DEFAULT_TURN_TTL_SECS: u64 = 3_600;

/// Server settings. Flags may be given before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = DEFAULT_HOST, global = true)]
    pub host: String,
    /// Port for both the REST API and Socket.IO (`0` picks a free one).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT, global = true)]
    pub port: u16,
    /// `sqlite://FILE?mode=rwc` or `postgres://USER@HOST/DB`. Default: a SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Where the default SQLite database and the generated JWT secret live.
    #[arg(long, env = "CONSULTD_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,
    /// Redis, for several nodes on one PostgreSQL database: their signaling and chat rooms live there (refused with SQLite).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,
    /// HS256 shared secret. Unset: a random one is generated once and kept in the data directory (0600).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// RS256/ES256 public key: PEM text, or the path of a PEM file.
    #[arg(long, env = "JWT_PUBLIC_KEY", hide_env_values = true, global = true)]
    pub jwt_public_key: Option<String>,
    /// RS256/ES256 private key (PEM text or path); only `consultd token` uses it.
    #[arg(long, env = "JWT_PRIVATE_KEY", hide_env_values = true, global = true)]
    pub jwt_private_key: Option<String>,
    /// Token signature algorithm.
    #[arg(long, env = "JWT_ALGORITHM", value_enum, default_value_t = JwtAlgorithm::Hs256, global = true)]
    pub jwt_algorithm: JwtAlgorithm,
    /// Dotted path of the role claim, e.g. `role` or `user_metadata.role`.
    #[arg(long, env = "ROLE_CLAIM", default_value = DEFAULT_ROLE_CLAIM, global = true)]
    pub role_claim: String,
    /// Roles that are hosts (comma-separated).
    #[arg(long, env = "HOST_ROLES", value_delimiter = ',', default_values_t = default_host_roles(), global = true)]
    pub host_roles: Vec<String>,
    /// Roles that are guests (comma-separated).
    #[arg(long, env = "GUEST_ROLES", value_delimiter = ',', default_values_t = default_guest_roles(), global = true)]
    pub guest_roles: Vec<String>,
    /// Roles that are admins (comma-separated).
    #[arg(long, env = "ADMIN_ROLES", value_delimiter = ',', default_values_t = default_admin_roles(), global = true)]
    pub admin_roles: Vec<String>,
    /// Allowed CORS origins, comma-separated, or `*` for any.
    #[arg(long, env = "CORS_ORIGINS", default_value = DEFAULT_CORS_ORIGINS, global = true)]
    pub cors_origins: String,
    /// Seconds before an unanswered call invitation expires.
    #[arg(long = "invite-ttl", env = "INVITE_TTL_SECS", default_value_t = DEFAULT_INVITE_TTL_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub invite_ttl_secs: u64,
    /// Seconds before an unanswered tutoring session request expires.
    #[arg(long = "session-ttl", env = "SESSION_TTL_SECS", default_value_t = DEFAULT_SESSION_TTL_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub session_ttl_secs: u64,
    /// Default length of a chat session once live, in seconds (a request's
    /// `duration_minutes` overrides it).
    #[arg(long = "chat-duration", env = "CHAT_DURATION_SECS", default_value_t = DEFAULT_CHAT_DURATION_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub chat_duration_secs: u64,
    /// Largest Socket.IO event accepted, in bytes; larger ones are answered `too_large`.
    #[arg(long, env = "MAX_EVENT_BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES, global = true)]
    pub max_event_bytes: usize,
    /// Largest REST request body, in bytes (413 above).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES, global = true)]
    pub max_body_bytes: usize,
    /// Longest chat message, in characters.
    #[arg(long, env = "MAX_CHAT_CHARS", default_value_t = DEFAULT_MAX_CHAT_CHARS, global = true)]
    pub max_chat_chars: usize,
    /// Sustained Socket.IO events per second per socket (0 = unlimited).
    #[arg(long, env = "EVENT_RATE", default_value_t = DEFAULT_EVENT_RATE, global = true)]
    pub event_rate: u32,
    /// Events a socket may send in a burst above the sustained rate (0 = unlimited).
    #[arg(long, env = "EVENT_BURST", default_value_t = DEFAULT_EVENT_BURST, global = true)]
    pub event_burst: u32,
    /// Signaling messages kept per room and sender for late joiners (the description included).
    #[arg(long, env = "REPLAY_MAX_MESSAGES", default_value_t = DEFAULT_REPLAY_MAX_MESSAGES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000), global = true)]
    pub replay_max_messages: usize,
    /// Bytes kept per room and sender for late joiners (a description is always kept).
    #[arg(long, env = "REPLAY_MAX_BYTES", default_value_t = DEFAULT_REPLAY_MAX_BYTES, global = true)]
    pub replay_max_bytes: usize,
    /// Packets queued for one socket before further sends to it are dropped (a stalled client).
    #[arg(long, env = "SOCKET_BUFFER", default_value_t = DEFAULT_SOCKET_BUFFER, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..=1_000_000), global = true)]
    pub socket_buffer: usize,
    /// Initial websocket read buffer per socket, in bytes (grows for larger frames).
    #[arg(long, env = "WS_READ_BUFFER", default_value_t = DEFAULT_WS_READ_BUFFER, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(256..=1_048_576), global = true)]
    pub ws_read_buffer: usize,
    /// Tokio scheduler: `multi` (one worker per core) or `current` (one thread).
    #[arg(long, env = "RUNTIME", value_enum, default_value_t = RuntimeFlavor::Multi, global = true)]
    pub runtime: RuntimeFlavor,
    /// Worker threads of the `multi` runtime (default: one per core).
    #[arg(long, env = "WORKER_THREADS", global = true)]
    pub worker_threads: Option<usize>,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` wins when set.
    #[arg(long, env = "LOG_LEVEL", default_value = DEFAULT_LOG_LEVEL, global = true)]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Seconds to wait for connections to close on SIGTERM before exiting anyway
    /// (a second SIGTERM exits at once).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS, global = true)]
    pub shutdown_grace_secs: u64,
    /// Seconds a client has to send a request's headers; a slower one (slowloris) is closed.
    #[arg(long, env = "HEADER_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=300), global = true)]
    pub header_timeout_secs: u64,
    /// Seconds between the server's Engine.IO pings.
    #[arg(long, env = "PING_INTERVAL_SECS", default_value_t = DEFAULT_PING_INTERVAL_SECS, value_parser = clap::value_parser!(u64).range(1..=300), global = true)]
    pub ping_interval_secs: u64,
    /// Seconds a socket may take to answer a ping before it is dropped.
    #[arg(long, env = "PING_TIMEOUT_SECS", default_value_t = DEFAULT_PING_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=300), global = true)]
    pub ping_timeout_secs: u64,
    /// Sockets one user may have open at once (every tab and device); more are refused `too_many_connections` (0 = unlimited).
    #[arg(long, env = "MAX_SOCKETS_PER_USER", default_value_t = DEFAULT_MAX_SOCKETS_PER_USER, global = true)]
    pub max_sockets_per_user: usize,
    /// Sustained Socket.IO handshakes per second per client IP; more are refused `rate_limited` (0 = unlimited).
    #[arg(long, env = "HANDSHAKE_RATE", default_value_t = DEFAULT_HANDSHAKE_RATE, global = true)]
    pub handshake_rate: u32,
    /// Handshakes one client IP may make in a burst above the sustained rate (0 = unlimited).
    #[arg(long, env = "HANDSHAKE_BURST", default_value_t = DEFAULT_HANDSHAKE_BURST, global = true)]
    pub handshake_burst: u32,
    /// Client networks (comma-separated CIDRs) with no handshake rate: by default
    /// loopback, i.e. local tools and a local proxy that is not a trusted proxy.
    #[arg(long, env = "RATE_LIMIT_EXEMPT", default_value = DEFAULT_RATE_LIMIT_EXEMPT, global = true)]
    pub rate_limit_exempt: String,
    /// Load balancers and proxies (comma-separated IPs or CIDRs) whose
    /// `X-Forwarded-For` names the client; from anyone else it is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", global = true)]
    pub trusted_proxies: String,
    /// Sustained REST requests per second per user; more are answered 429 `rate_limited` (0 = unlimited).
    #[arg(long, env = "REST_RATE", default_value_t = DEFAULT_REST_RATE, global = true)]
    pub rest_rate: u32,
    /// REST requests one user may make in a burst above the sustained rate (0 = unlimited).
    #[arg(long, env = "REST_BURST", default_value_t = DEFAULT_REST_BURST, global = true)]
    pub rest_burst: u32,
    /// Seconds after which a call in progress (or an accepted tutoring
    /// session) ends as `abandoned` when neither participant has had any
    /// socket or REST request in that time.
    #[arg(long = "abandon-after", env = "ABANDON_SECS", default_value_t = DEFAULT_ABANDON_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub abandon_secs: u64,
    /// Serve the browser demo at `/demo/`, which mints host and guest tokens
    /// for anyone at `POST /demo/token`: for trying consultd out, never in production.
    #[arg(long, env = "DEMO", value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub demo: bool,
    /// The demo page's directory (default: `examples/web` under the current
    /// directory, else in the source tree consultd was built from).
    #[arg(long, env = "DEMO_DIR", global = true)]
    pub demo_dir: Option<PathBuf>,
    #[command(flatten)]
    pub media: MediaConfig,
    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

/// The media path (CONTRACT §9): the PeerJS broker and the ICE servers
/// handed to clients. See docs/media.md.
#[derive(Debug, Clone, Args)]
pub struct MediaConfig {
    /// Where the PeerJS server protocol is served (clients set the same
    /// `path`); `off` (or empty) switches the broker off.
    #[arg(long, env = "PEERJS_PATH", default_value = DEFAULT_PEERJS_PATH, global = true)]
    pub peerjs_path: String,
    /// The PeerJS API key clients must give (`key` option; PeerJS's default).
    #[arg(long, env = "PEERJS_KEY", default_value = DEFAULT_PEERJS_KEY, global = true)]
    pub peerjs_key: String,
    /// Milliseconds a message for an id nobody holds waits for it before
    /// the sender is told `EXPIRE`.
    #[arg(long, env = "PEERJS_EXPIRE_TIMEOUT_MS", default_value_t = DEFAULT_PEERJS_EXPIRE_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(100..=600_000), global = true)]
    pub peerjs_expire_timeout_ms: u64,
    /// Milliseconds without any message (PeerJS clients send `HEARTBEAT`
    /// every 5 s) after which a peer's socket is closed.
    #[arg(long, env = "PEERJS_ALIVE_TIMEOUT_MS", default_value_t = DEFAULT_PEERJS_ALIVE_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1_000..=3_600_000), global = true)]
    pub peerjs_alive_timeout_ms: u64,
    /// Peers connected to this node at once; more are refused with `ERROR`.
    #[arg(long, env = "PEERJS_CONCURRENT_LIMIT", default_value_t = DEFAULT_PEERJS_CONCURRENT_LIMIT, global = true)]
    pub peerjs_concurrent_limit: usize,
    /// Answer `GET {path}/{key}/peers` with every connected id (PeerJS's
    /// `allow_discovery`); off, it is 401. It tells anyone who is online.
    #[arg(long, env = "PEERJS_ALLOW_DISCOVERY", value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub peerjs_allow_discovery: bool,
    /// Seconds a ticket from `POST /api/peerjs/ticket` may open a broker
    /// connection (a connection, once open, outlives it).
    #[arg(long, env = "PEERJS_TICKET_TTL_SECS", default_value_t = DEFAULT_PEERJS_TICKET_TTL_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub peerjs_ticket_ttl_secs: u64,
    /// STUN URLs for `GET /api/ice-servers`, comma-separated
    /// (e.g. `stun:stun.example.org:3478`).
    #[arg(long, env = "STUN_URLS", value_delimiter = ',', global = true)]
    pub stun_urls: Vec<String>,
    /// TURN URLs, comma-separated (e.g. `turn:turn.example.org:3478?transport=udp`);
    /// they need TURN_SECRET.
    #[arg(long, env = "TURN_URLS", value_delimiter = ',', global = true)]
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret` (`use-auth-secret`): TURN credentials
    /// are derived from it and expire.
    #[arg(long, env = "TURN_SECRET", hide_env_values = true, global = true)]
    pub turn_secret: Option<String>,
    /// Seconds the TURN credentials handed out stay valid.
    #[arg(long, env = "TURN_TTL", default_value_t = DEFAULT_TURN_TTL_SECS, value_parser = clap::value_parser!(u64).range(60..=604_800), global = true)]
    pub turn_ttl: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            peerjs_path: DEFAULT_PEERJS_PATH.to_owned(),
            peerjs_key: DEFAULT_PEERJS_KEY.to_owned(),
            peerjs_expire_timeout_ms: DEFAULT_PEERJS_EXPIRE_TIMEOUT_MS,
            peerjs_alive_timeout_ms: DEFAULT_PEERJS_ALIVE_TIMEOUT_MS,
            peerjs_concurrent_limit: DEFAULT_PEERJS_CONCURRENT_LIMIT,
            peerjs_allow_discovery: false,
            peerjs_ticket_ttl_secs: DEFAULT_PEERJS_TICKET_TTL_SECS,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: DEFAULT_TURN_TTL_SECS,
        }
    }
}

impl MediaConfig {
    /// The broker's path without its trailing slash, or `None` when off.
    pub fn peerjs_path(&self) -> Result<Option<String>, String> {
        let path = self.peerjs_path.trim().trim_end_matches('/');
        if matches!(self.peerjs_path.trim(), "" | "off" | "false") {
            return Ok(None);
        }
        let valid = path.starts_with('/')
            && path[1..].split('/').all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            });
        if !valid || path.starts_with("/api") || path.starts_with("/socket.io") {
            return Err(format!(
                "PEERJS_PATH `{}` must be a path of its own such as /peerjs (not /, /api or /socket.io)",
                self.peerjs_path
            ));
        }
        Ok(Some(path.to_owned()))
    }

    /// The non-empty URLs of a list.
    pub fn urls(list: &[String]) -> Vec<String> {
        list.iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Refuses TURN URLs without the secret their credentials come from.
    pub fn check(&self) -> Result<(), String> {
        self.peerjs_path()?;
        let secret = self.turn_secret.as_deref().is_some_and(|s| !s.is_empty());
        if !Self::urls(&self.turn_urls).is_empty() && !secret {
            return Err("TURN_URLS needs TURN_SECRET (coturn's static-auth-secret)".into());
        }
        if self.peerjs_key.trim().is_empty() {
            return Err("PEERJS_KEY must not be empty".into());
        }
        Ok(())
    }
}

/// Lifecycle webhooks (CONTRACT §10): where every committed transition is
/// POSTed, signed. See docs/webhooks.md.
#[derive(Debug, Clone, Args)]
pub struct WebhookConfig {
    /// Receiver URLs (http or https), comma-separated or the flag repeated;
    /// each gets every event. Unset: no webhooks.
    #[arg(
        long = "webhook-url",
        env = "WEBHOOK_URL",
        value_delimiter = ',',
        global = true
    )]
    pub webhook_urls: Vec<String>,
    /// The HMAC-SHA256 key of the `Consultd-Signature` header; required with
    /// WEBHOOK_URL.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true, global = true)]
    pub webhook_secret: Option<String>,
    /// How long one delivery attempt may take before it counts as failed
    /// (e.g. 10s).
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub webhook_timeout: Duration,
    /// The first retry's delay; each later one doubles it, up to
    /// WEBHOOK_RETRY_MAX, with up to 20% added at random.
    #[arg(long, env = "WEBHOOK_RETRY_MIN", default_value = "1s", value_parser = humantime::parse_duration, global = true)]
    pub webhook_retry_min: Duration,
    /// The longest delay between two attempts.
    #[arg(long, env = "WEBHOOK_RETRY_MAX", default_value = "10m", value_parser = humantime::parse_duration, global = true)]
    pub webhook_retry_max: Duration,
    /// How long after its transition an undelivered event is given up on
    /// and kept as `dead` in `webhook_outbox`.
    #[arg(long, env = "WEBHOOK_GIVE_UP", default_value = "3d", value_parser = humantime::parse_duration, global = true)]
    pub webhook_give_up: Duration,
    /// Deliveries this node makes at once (to different entities; one
    /// entity's events go one at a time).
    #[arg(long, env = "WEBHOOK_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub webhook_concurrency: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            webhook_urls: Vec::new(),
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(10),
            webhook_retry_min: Duration::from_secs(1),
            webhook_retry_max: Duration::from_secs(600),
            webhook_give_up: Duration::from_secs(3 * 86_400),
            webhook_concurrency: 16,
        }
    }
}

impl WebhookConfig {
    /// The receiver URLs, validated; empty when webhooks are off.
    pub fn targets(&self) -> Result<Vec<String>, String> {
        let mut targets = Vec::new();
        for raw in MediaConfig::urls(&self.webhook_urls) {
            let url = url::Url::parse(&raw)
                .map_err(|e| format!("WEBHOOK_URL `{raw}` is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!(
                    "WEBHOOK_URL `{raw}` must be an http:// or https:// URL"
                ));
            }
            if !targets.contains(&raw) {
                targets.push(raw);
            }
        }
        Ok(targets)
    }

    /// Refuses receivers without a signing secret, and delays that cannot
    /// work together.
    pub fn check(&self) -> Result<(), String> {
        let targets = self.targets()?;
        let secret = self
            .webhook_secret
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty());
        if !targets.is_empty() && !secret {
            return Err("WEBHOOK_URL needs WEBHOOK_SECRET: every delivery is signed".into());
        }
        if self.webhook_timeout.is_zero() || self.webhook_retry_min.is_zero() {
            return Err("WEBHOOK_TIMEOUT and WEBHOOK_RETRY_MIN must be above zero".into());
        }
        if self.webhook_retry_max < self.webhook_retry_min {
            return Err("WEBHOOK_RETRY_MAX must not be below WEBHOOK_RETRY_MIN".into());
        }
        Ok(())
    }
}

fn default_host_roles() -> Vec<String> {
    strings(consultd_domain::RoleMap::DEFAULT_HOSTS)
}
fn default_guest_roles() -> Vec<String> {
    strings(consultd_domain::RoleMap::DEFAULT_GUESTS)
}
fn default_admin_roles() -> Vec<String> {
    strings(consultd_domain::RoleMap::DEFAULT_ADMINS)
}
fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for Config {
    /// The same defaults as the command line, without reading the environment
    /// (tests build their `Config` from this).
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            database_url: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            redis_url: None,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_private_key: None,
            jwt_algorithm: JwtAlgorithm::Hs256,
            role_claim: DEFAULT_ROLE_CLAIM.to_owned(),
            host_roles: default_host_roles(),
            guest_roles: default_guest_roles(),
            admin_roles: default_admin_roles(),
            cors_origins: DEFAULT_CORS_ORIGINS.to_owned(),
            invite_ttl_secs: DEFAULT_INVITE_TTL_SECS,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            chat_duration_secs: DEFAULT_CHAT_DURATION_SECS,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_chat_chars: DEFAULT_MAX_CHAT_CHARS,
            event_rate: DEFAULT_EVENT_RATE,
            event_burst: DEFAULT_EVENT_BURST,
            replay_max_messages: DEFAULT_REPLAY_MAX_MESSAGES,
            replay_max_bytes: DEFAULT_REPLAY_MAX_BYTES,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
            ws_read_buffer: DEFAULT_WS_READ_BUFFER,
            runtime: RuntimeFlavor::Multi,
            worker_threads: None,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            log_format: LogFormat::Text,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            header_timeout_secs: DEFAULT_HEADER_TIMEOUT_SECS,
            ping_interval_secs: DEFAULT_PING_INTERVAL_SECS,
            ping_timeout_secs: DEFAULT_PING_TIMEOUT_SECS,
            max_sockets_per_user: DEFAULT_MAX_SOCKETS_PER_USER,
            handshake_rate: DEFAULT_HANDSHAKE_RATE,
            handshake_burst: DEFAULT_HANDSHAKE_BURST,
            rate_limit_exempt: DEFAULT_RATE_LIMIT_EXEMPT.to_owned(),
            trusted_proxies: String::new(),
            rest_rate: DEFAULT_REST_RATE,
            rest_burst: DEFAULT_REST_BURST,
            abandon_secs: DEFAULT_ABANDON_SECS,
            demo: false,
            demo_dir: None,
            media: MediaConfig::default(),
            webhooks: WebhookConfig::default(),
        }
    }
}

impl Config {
    /// Where the demo page is read from: `DEMO_DIR`, else `examples/web`
    /// under the current directory (`cargo run` from a checkout), else the
    /// source tree this binary was built from.
    pub fn effective_demo_dir(&self) -> PathBuf {
        if let Some(dir) = &self.demo_dir {
            return dir.clone();
        }
        let local = PathBuf::from("examples/web");
        if local.join("index.html").is_file() {
            return local;
        }
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/web"))
    }

    /// The database URL in force: the configured one, or the default SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("consultd.sqlite3").display()
            ),
        }
    }

    /// The Redis URL, if one is set (blank is unset).
    pub fn redis(&self) -> Option<&str> {
        self.redis_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// Settings that only make sense together: several nodes (`REDIS_URL`)
    /// share their state in one PostgreSQL database, and a SQLite file is
    /// one node's alone.
    pub fn check_nodes(&self) -> Result<(), String> {
        if self.redis().is_none() {
            return Ok(());
        }
        let db = self.effective_database_url();
        if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(
                "REDIS_URL is for several nodes, which share one PostgreSQL database: \
                 set DATABASE_URL=postgres://… as well, or unset REDIS_URL (SQLite serves one node)"
                    .into(),
            );
        }
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        if !set(&self.jwt_secret) && !set(&self.jwt_public_key) {
            // A generated secret is one node's own: a token from another
            // node would be refused here.
            return Err(
                "REDIS_URL is for several nodes, which must verify the same tokens: \
                 set JWT_SECRET (or JWT_PUBLIC_KEY) to the same value on every node"
                    .into(),
            );
        }
        Ok(())
    }

    /// The role mapping from the three role lists.
    pub fn role_map(&self) -> Result<consultd_domain::RoleMap, consultd_domain::RoleMapError> {
        consultd_domain::RoleMap::new(&self.host_roles, &self.guest_roles, &self.admin_roles)
    }

    /// The default chat session length; the parser bounds it to a day.
    pub fn chat_duration(&self) -> consultd_domain::ChatDuration {
        consultd_domain::ChatDuration::from_secs_clamped(self.chat_duration_secs)
    }

    /// What a signaling room keeps per sender for late joiners.
    pub fn replay_limits(&self) -> consultd_domain::ReplayLimits {
        consultd_domain::ReplayLimits {
            max_messages: self.replay_max_messages,
            max_bytes: self.replay_max_bytes,
        }
    }

    /// Builds the tokio runtime this configuration asks for.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.runtime {
            RuntimeFlavor::Multi => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if let Some(n) = self.worker_threads.filter(|n| *n > 0) {
                    b.worker_threads(n);
                }
                b
            }
            RuntimeFlavor::Current => tokio::runtime::Builder::new_current_thread(),
        };
        builder.enable_all().build()
    }

    /// The engine-level frame limit: above the event limit, so that an
    /// oversized event can still be read and answered `too_large` instead of
    /// the connection being dropped.
    pub fn engine_max_payload(&self) -> u64 {
        let floor = 1024 * 1024;
        (self.max_event_bytes.saturating_mul(2)).max(floor) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_needs_postgres_and_shared_keys() {
        let with = |db: Option<&str>, redis: Option<&str>| Config {
            database_url: db.map(str::to_owned),
            redis_url: redis.map(str::to_owned),
            jwt_secret: Some("s".repeat(32)),
            ..Config::default()
        };
        let pg = Some("postgres://p@h/db");
        let unkeyed = Config {
            jwt_secret: None,
            ..with(pg, Some("redis://r"))
        };
        assert!(unkeyed.check_nodes().unwrap_err().contains("JWT_SECRET"));
        let public = Config {
            jwt_public_key: Some("/keys/public.pem".into()),
            ..unkeyed
        };
        assert_eq!(public.check_nodes(), Ok(()));
        let refused = with(None, Some("redis://127.0.0.1:6379")).check_nodes();
        assert!(refused.unwrap_err().contains("DATABASE_URL=postgres://"));
        let sqlite = Some("sqlite:///tmp/x.sqlite3?mode=rwc");
        assert!(with(sqlite, Some("redis://r")).check_nodes().is_err());
        for ok in [
            with(Some("postgres://p@h/db"), Some("redis://r")),
            with(Some("postgresql://p@h/db"), Some("redis://r")),
            with(None, None),
            with(None, Some("  ")),
        ] {
            assert_eq!(ok.check_nodes(), Ok(()));
        }
    }

    #[test]
    fn cli_defaults_match_config_default() {
        // Parsed without the environment's influence on these fields.
        let cli = Cli::try_parse_from(["consultd"]).unwrap();
        let d = Config::default();
        let c = cli.config;
        if std::env::var_os("PORT").is_none() {
            assert_eq!(c.port, d.port);
        }
        if std::env::var_os("HOST").is_none() {
            assert_eq!(c.host, d.host);
        }
        assert_eq!(c.host_roles, d.host_roles);
        assert_eq!(c.guest_roles, d.guest_roles);
        assert_eq!(c.admin_roles, d.admin_roles);
        assert_eq!(c.max_event_bytes, d.max_event_bytes);
        assert_eq!(c.invite_ttl_secs, d.invite_ttl_secs);
        assert!(cli.command.is_none());
    }

    #[test]
    fn subcommands_and_global_flags_parse() {
        let cli = Cli::try_parse_from([
            "consultd", "token", "--sub", "42", "--role", "doctor", "--ttl", "90s", "--port",
            "5000",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Token(t)) => {
                assert_eq!(t.sub, "42");
                assert_eq!(t.ttl, Duration::from_secs(90));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cli.config.port, 5000);
        let cli = Cli::try_parse_from(["consultd", "migrate", "status"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Migrate {
                action: MigrateAction::Status,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "consultd",
            "--host-roles",
            "tutor,coach",
            "--jwt-algorithm",
            "RS256",
        ])
        .unwrap();
        assert_eq!(cli.config.host_roles, ["tutor", "coach"]);
        assert_eq!(cli.config.jwt_algorithm, JwtAlgorithm::Rs256);
        assert!(Cli::try_parse_from(["consultd", "--port", "nope"]).is_err());
        assert!(
            Cli::try_parse_from([
                "consultd", "token", "--sub", "1", "--role", "x", "--ttl", "soon"
            ])
            .is_err()
        );
    }

    #[test]
    fn default_database_is_a_sqlite_file_in_the_data_dir() {
        let c = Config {
            data_dir: PathBuf::from("/var/lib/consultd"),
            ..Config::default()
        };
        assert_eq!(
            c.effective_database_url(),
            "sqlite:///var/lib/consultd/consultd.sqlite3?mode=rwc"
        );
        let c = Config {
            database_url: Some("postgres://x@y/z".into()),
            ..Config::default()
        };
        assert_eq!(c.effective_database_url(), "postgres://x@y/z");
    }

    #[test]
    fn engine_limit_stays_above_the_event_limit() {
        let c = Config::default();
        assert!(c.engine_max_payload() >= 1024 * 1024);
        let c = Config {
            max_event_bytes: 4 * 1024 * 1024,
            ..Config::default()
        };
        assert!(c.engine_max_payload() > 4 * 1024 * 1024);
    }
}
