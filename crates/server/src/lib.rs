//! consultd's server: configuration, the axum REST API and Socket.IO on one
//! port, and the process lifecycle (start, serve, graceful shutdown).
//!
//! Code tour: [`config`] (flags and env), [`keys`] + [`auth`] (JWT identity),
//! [`http`] (REST), [`socket`] (Socket.IO), [`error`] (one error type for
//! both), [`telemetry`] (logs and metrics).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod activity;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
mod db_check;
pub mod error;
pub mod http;
pub mod ice;
mod input;
pub mod keys;
pub mod limits;
pub mod peerjs;
pub mod presence;
pub mod serve;
pub mod service;
pub mod socket;
pub mod state;
mod sync;
pub mod telemetry;
pub mod timers;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Request};
use consultd_persistence::Db;
use consultd_persistence::bus::Bus;
use socketioxide::SocketIo;
use tokio::task::JoinHandle;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Cli, Command, Config, JwtAlgorithm, MigrateAction, TokenArgs};
use crate::keys::{KeySource, Keys};
use crate::limits::{KeyedLimiter, Networks};
use crate::presence::Presence;
use crate::serve::Serving;
use crate::service::outbox::{RoomControl, RoomControls};
use crate::service::peers::{NoBroker, PeerDirectory};
use crate::service::{CallService, Context, Journal, Ports, Services, Settings};
use crate::socket::{LocalOutbox, LocalRooms, SharedRooms};
use crate::state::{AppState, Limits};
use crate::timers::Timer;

/// Why the server could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("role mapping: {0}")]
    Roles(#[from] consultd_domain::RoleMapError),
    #[error("database: {0}")]
    Db(#[from] consultd_persistence::RepoError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid CORS origin `{0}`")]
    Cors(String),
    #[error("{0}")]
    Token(#[from] auth::MintError),
    #[error("{0}")]
    Config(String),
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    rooms: Arc<socket::Rooms>,
    io: SocketIo,
    serving: Serving,
    /// The deadline timer and the abandon sweep.
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// This node's signaling and chat rooms.
    pub fn rooms(&self) -> &socket::Rooms {
        &self.rooms
    }

    /// The Socket.IO handle, to emit to rooms.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// Stops gracefully, within `SHUTDOWN_GRACE_SECS` in all:
    /// 1. stops accepting (new connections are refused);
    /// 2. lets the REST requests in flight finish and answer, pushes
    ///    included (the Socket.IO layer is still up);
    /// 3. closes every socket's transport (clients see a transport close and
    ///    reconnect, to another node or to this one once it is back);
    /// 4. waits for the remaining connections, then closes the database.
    ///
    /// Nothing committed is lost: every transition commits before it is
    /// answered, and deadlines live in the database for the next start.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let deadline = tokio::time::Instant::now() + grace;
        self.serving.stop_accepting();
        if tokio::time::timeout_at(deadline, self.state.in_flight.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.state.in_flight.count(),
                "REST requests still running after the grace period"
            );
        }
        if let Some(broker) = &self.state.peerjs {
            broker.close_all();
        }
        if tokio::time::timeout_at(deadline, self.io.close())
            .await
            .is_err()
        {
            tracing::warn!("sockets still closing after the grace period");
        }
        if tokio::time::timeout_at(deadline, self.serving.closed())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period; closing them");
        }
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.state.db.conn().clone().close().await {
            tracing::warn!(error = %e, "closing the database pool");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The verifier (and, with a private key or secret, the minter) for `config`.
pub fn authenticator(config: &Config) -> Result<Authenticator, StartError> {
    let keys = Keys::load(config)?;
    match &keys.source {
        KeySource::Configured => {}
        KeySource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "no JWT_SECRET configured: generated a random secret (mode 0600); `consultd token` uses the same file"
        ),
        KeySource::Loaded(path) => {
            tracing::info!(path = %path.display(), "using the JWT secret generated on an earlier run")
        }
    }
    Ok(Authenticator::new(
        keys,
        &config.role_claim,
        config.role_map()?,
    ))
}

async fn open_database(config: &Config) -> Result<Db, StartError> {
    if config
        .database_url
        .as_deref()
        .is_none_or(|u| u.trim().is_empty())
    {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let url = config.effective_database_url();
    match Db::connect(&url).await {
        Ok(db) => Ok(db),
        Err(e) => match db_check::explain(&url, &e).await {
            Some(words) => Err(StartError::Config(words)),
            None => Err(e.into()),
        },
    }
}

/// Starts serving on `config.host:config.port`; returns once it listens.
pub async fn start(config: Config) -> Result<Server, StartError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] with the time taken from `clock` (tests move a manual one).
pub async fn start_with_clock(config: Config, clock: SharedClock) -> Result<Server, StartError> {
    config.check_nodes().map_err(StartError::Config)?;
    config.media.check().map_err(StartError::Config)?;
    config.webhooks.check().map_err(StartError::Config)?;
    if config.redis().is_some() {
        // Said aloud, so that nobody runs two nodes believing that
        // everything crosses between them already.
        tracing::info!(
            "REDIS_URL is set: several nodes share pushes and deadlines (over PostgreSQL), \
             rooms and presence (in Redis); the per-user socket cap is counted per node"
        );
    }
    let auth = Arc::new(authenticator(&config)?);
    let limits = Arc::new(Limits {
        rest: KeyedLimiter::new(config.rest_rate, config.rest_burst),
        handshakes: KeyedLimiter::new(config.handshake_rate, config.handshake_burst),
        exempt: Networks::parse(&config.rate_limit_exempt, "RATE_LIMIT_EXEMPT")
            .map_err(StartError::Config)?,
        trusted: Networks::parse(&config.trusted_proxies, "TRUSTED_PROXIES")
            .map_err(StartError::Config)?,
    });
    let cors = cors(&config.cors_origins)?;
    // Bind before the database work: a port in use fails at once.
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .map_err(|e| {
            StartError::Config(format!(
                "cannot listen on {}:{} (HOST, PORT): {e}",
                config.host, config.port
            ))
        })?;
    let addr = listener.local_addr()?;
    let db = open_database(&config).await?;
    db.migrate_up().await?;
    // Several nodes: listening starts before anything can commit here, so
    // this node hears every change from now on.
    let bus = match config.redis() {
        Some(_) => {
            let bus = Bus::of(&db).await?;
            let listener = bus.listen(&db).await?;
            Some((bus, listener))
        }
        None => None,
    };
    let config = Arc::new(config);
    let (io_layer, io) = socket::layer(&config);
    let (timer, timer_rx) = Timer::channel();
    let rooms = Arc::new(socket::Rooms::new(config.replay_limits()));
    let owed = Arc::new(socket::OwedIndex::new());
    let outbox = Arc::new(LocalOutbox::new(io.clone(), rooms.clone(), owed.clone()));
    // Several nodes share their rooms in Redis; one node keeps them here.
    let shared = match (&bus, config.redis()) {
        (Some((bus, _)), Some(url)) => Some(
            SharedRooms::connect(url, bus.channel(), rooms.clone(), config.replay_limits())
                .await
                .map_err(StartError::Config)?,
        ),
        _ => None,
    };
    let hub: Arc<dyn socket::RoomHub> = match &shared {
        Some((hub, _)) => hub.clone(),
        None => Arc::new(LocalRooms::new(rooms.clone())),
    };
    let presence = Arc::new(match &shared {
        Some((hub, _)) => Presence::shared(clock.clone(), hub.clone()),
        None => Presence::new(clock.clone()),
    });
    let mut mesh_task = None;
    let peerjs = match config.media.peerjs_path().map_err(StartError::Config)? {
        Some(_) => {
            let media = &config.media;
            let settings = peerjs::BrokerSettings {
                key: media.peerjs_key.clone(),
                expire: Duration::from_millis(media.peerjs_expire_timeout_ms),
                alive: Duration::from_millis(media.peerjs_alive_timeout_ms),
                limit: media.peerjs_concurrent_limit,
                discovery: media.peerjs_allow_discovery,
                rate: (config.event_rate, config.event_burst),
            };
            let tickets = peerjs::Tickets::load(
                &db,
                config.role_map()?,
                media.peerjs_ticket_ttl_secs,
                clock.now(),
            )
            .await?;
            // Several nodes share ids and relay to each other over Redis.
            let mesh = match (&bus, config.redis()) {
                (Some((bus, _)), Some(url)) => Some(
                    peerjs::Mesh::connect(url, bus.channel(), settings.alive)
                        .await
                        .map_err(StartError::Config)?,
                ),
                _ => None,
            };
            let broker = peerjs::Broker::new(
                settings,
                service::RoomAccess::new(db.clone()),
                tickets,
                mesh.as_ref().map(|(m, _)| m.clone()),
            );
            if let Some((mesh, tasks)) = mesh {
                let to = broker.clone();
                mesh_task = Some(tokio::spawn(
                    mesh.run(tasks, move |envelope| to.on_envelope(envelope)),
                ));
            }
            Some(broker)
        }
        None => None,
    };
    // A call's end closes its signaling room and its PeerJS pairs.
    let room_control: Arc<dyn RoomControl> = match &peerjs {
        Some(broker) => Arc::new(RoomControls(vec![hub.clone(), broker.clone()])),
        None => hub.clone(),
    };
    let peer_directory: Arc<dyn PeerDirectory> = match &peerjs {
        Some(broker) => broker.clone(),
        None => Arc::new(NoBroker),
    };
    let activity = Arc::new(activity::Activity::default());
    let targets = config.webhooks.targets().map_err(StartError::Config)?;
    let journal = Journal::new(targets.clone(), activity.clone());
    let webhook_worker = webhooks::Worker::new(
        &config.webhooks,
        &targets,
        db.clone(),
        clock.clone(),
        journal.wake_handle(),
        activity.clone(),
    )
    .map_err(StartError::Config)?;
    let ports = Ports {
        outbox: outbox.clone(),
        rooms: room_control.clone(),
        peers: peer_directory,
    };
    let ctx = Context::new(
        db.clone(),
        ports,
        timer.clone(),
        clock.clone(),
        bus.as_ref().map(|(bus, _)| bus.clone()),
        journal,
    );
    let settings = Settings {
        invite_ttl: seconds(config.invite_ttl_secs),
        session_ttl: seconds(config.session_ttl_secs),
        chat_duration: config.chat_duration(),
    };
    let services = Services::new(ctx, settings);
    let state = AppState {
        config: config.clone(),
        db,
        auth,
        metrics: telemetry::metrics_handle(),
        services: services.clone(),
        clock: clock.clone(),
        presence: presence.clone(),
        limits,
        in_flight: Arc::default(),
        bus: bus
            .as_ref()
            .map(|_| Arc::new(cluster::BusHealth::default())),
        redis: shared.as_ref().map(|(hub, _)| hub.health()),
        ice: Arc::new(ice::IceSettings::new(&config.media)),
        peerjs: peerjs.clone(),
        activity: activity.clone(),
    };
    socket::register(&io, state.clone(), hub.clone(), owed.clone());
    // Reload before listening, so nothing due is missed.
    let deadlines = services.deadlines().await?;
    // After the bus listens (several nodes), before any socket connects.
    let cooling = owed.cool();
    owed.warm(cooling, services.owed().await?);
    let calls = services.calls.clone();
    let mut tasks = vec![tokio::spawn(timers::run(
        timer_rx,
        services,
        deadlines,
        clock.clone(),
    ))];
    if let Some((hub, redis)) = shared {
        tasks.push(tokio::spawn(hub.run(redis)));
    }
    if let Some(broker) = &peerjs {
        tasks.push(tokio::spawn(broker.clone().run()));
    }
    tasks.extend(mesh_task);
    tasks.push(tokio::spawn(activity.run(clock.clone())));
    tasks.push(tokio::spawn(socket::admin::feed(io.clone(), state.clone())));
    // Every node with receivers configured delivers; the claim keeps two
    // nodes off one row.
    if let Some(worker) = webhook_worker {
        tasks.push(tokio::spawn(worker.run()));
    }
    // Every node sweeps; with several nodes presence is shared, and the
    // abandon is a compare-and-set, so a call ends once.
    tasks.push(tokio::spawn(sweep_abandoned(
        calls,
        presence,
        Duration::from_secs(config.abandon_secs),
        clock,
    )));
    if let Some((bus, listener)) = bus {
        let delivery = cluster::Delivery {
            outbox,
            rooms: room_control,
            timer,
        };
        let (io, app) = (io.clone(), state.clone());
        let on_gap = move || {
            let (io, app, owed) = (io.clone(), app.clone(), owed.clone());
            async move {
                // Pushes went unheard: connects read everything until the
                // index is reloaded, and the sockets here now resync all.
                let cooling = owed.cool();
                tokio::spawn(reload_owed(app.services.clone(), owed.clone(), cooling));
                socket::resync_everyone(&io, &app, &owed).await;
            }
        };
        let health = state.bus.clone().unwrap_or_default();
        tasks.push(tokio::spawn(cluster::listen(
            listener, bus, delivery, health, on_gap,
        )));
    }
    let app = http::router(state.clone())
        .layer(io_layer)
        .layer(axum::middleware::map_request(socket::detach_engine_head))
        .layer(cors)
        .layer(
            // Path only: a query string can carry `?token=`, which never goes in a log.
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        );
    let header_timeout = Duration::from_secs(config.header_timeout_secs);
    let serving = Serving::start(listener, app, header_timeout);
    tracing::info!(%addr, database = ?state.db.backend(), "consultd listening");
    if config.demo {
        http::announce_demo(&config.effective_demo_dir(), addr);
    }
    Ok(Server {
        addr,
        state,
        rooms,
        io,
        serving,
        tasks,
    })
}

fn seconds(secs: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// Loads the connect resync's index again after a bus gap, retrying while
/// the database does not answer (the index stays cold meanwhile, which
/// only costs queries).
async fn reload_owed(services: Services, owed: Arc<socket::OwedIndex>, cooling: socket::Cooling) {
    loop {
        match services.owed().await {
            Ok(loaded) => {
                owed.warm(cooling, loaded);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "resync index not reloaded; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Ends calls in progress whose participants have both been gone for
/// `after` (CONTRACT §4: abandoned), looking every [`timers::sweep_interval`].
/// Presence is this process's, so after a restart every call gets the whole
/// time again.
async fn sweep_abandoned(
    calls: CallService,
    presence: Arc<Presence>,
    after: Duration,
    clock: SharedClock,
) {
    timers::every(timers::sweep_interval(after), clock, || {
        let (calls, presence) = (&calls, &presence);
        async move {
            presence.publish(after * 2);
            match calls.abandon_idle(presence, after).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(ended = n, "abandoned calls ended"),
                Err(e) => {
                    tracing::warn!(error = %e, "abandon sweep failed; trying again next time")
                }
            }
            presence.forget_idle(after);
        }
    })
    .await;
}

fn cors(origins: &str) -> Result<CorsLayer, StartError> {
    let layer = CorsLayer::new()
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(Duration::from_secs(600));
    let origins: Vec<&str> = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() || origins.contains(&"*") {
        return Ok(layer.allow_origin(AllowOrigin::any()));
    }
    let list = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| StartError::Cors((*o).to_owned())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(layer
        .allow_origin(AllowOrigin::list(list))
        .allow_credentials(true))
}

/// Serves until SIGTERM or SIGINT, then shuts down gracefully; a second
/// signal ends the process at once.
pub async fn serve(config: Config) -> Result<(), StartError> {
    // Installed before the port opens: a supervisor (or a test) that sees
    // the server healthy and sends SIGTERM at once must get a graceful stop,
    // not the default action that kills the process.
    let mut signals = ShutdownSignals::install();
    let server = start(config).await?;
    signals.next().await;
    tracing::info!("shutting down");
    tokio::select! {
        res = server.shutdown() => res,
        () = signals.next() => {
            tracing::warn!("second signal: exiting without waiting");
            Ok(())
        }
    }
}

/// SIGTERM and SIGINT, listened to from the moment they are installed.
struct ShutdownSignals {
    #[cfg(unix)]
    streams: Vec<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    #[cfg(unix)]
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = [SignalKind::terminate(), SignalKind::interrupt()]
            .into_iter()
            .filter_map(|kind| signal(kind).ok())
            .collect();
        Self { streams }
    }

    #[cfg(not(unix))]
    fn install() -> Self {
        Self {}
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        let all = self.streams.iter_mut().map(|s| Box::pin(s.recv()));
        futures_util::future::select_all(all).await;
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the command line: `serve` (default), `migrate`, `token`.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    telemetry::init_logging(&cli.config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate { action, steps } => migrate(&cli.config, action, steps).await,
        Command::Token(args) => {
            println!("{}", mint(&cli.config, &args)?);
            Ok(())
        }
    }
}

async fn migrate(config: &Config, action: MigrateAction, steps: u32) -> Result<(), StartError> {
    let db = open_database(config).await?;
    match action {
        MigrateAction::Up => db.migrate_up().await?,
        MigrateAction::Down => db.migrate_down(steps).await?,
        MigrateAction::Status => {}
    }
    for m in db.migration_status().await? {
        println!(
            "{} {}",
            if m.applied { "applied" } else { "pending" },
            m.name
        );
    }
    Ok(())
}

/// The token `consultd token` prints.
pub fn mint(config: &Config, args: &TokenArgs) -> Result<String, StartError> {
    // Minting signs: with an asymmetric algorithm that takes the private
    // key, whatever else is missing.
    let asymmetric = match config.jwt_algorithm {
        JwtAlgorithm::Hs256 => None,
        JwtAlgorithm::Rs256 => Some("RS256"),
        JwtAlgorithm::Es256 => Some("ES256"),
    };
    if let Some(name) = asymmetric
        && config.jwt_private_key.is_none()
    {
        return Err(StartError::Config(format!(
            "`consultd token` signs {name} tokens with JWT_PRIVATE_KEY (a PEM file or text): set it, and JWT_PUBLIC_KEY to verify"
        )));
    }
    let auth = authenticator(config)?;
    Ok(auth.mint(
        &args.sub,
        &args.role,
        args.name.as_deref(),
        args.ttl.as_secs(),
    )?)
}
