//! What every handler shares.

use std::sync::Arc;

use consultd_persistence::Db;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Authenticator;
use crate::clock::SharedClock;
use crate::cluster::BusHealth;
use crate::config::Config;
pub use crate::limits::Limits;
use crate::presence::Presence;
use crate::serve::InFlight;
use crate::service::Services;

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub auth: Arc<Authenticator>,
    pub metrics: PrometheusHandle,
    pub services: Services,
    /// Where the server reads the time (the services read the same one).
    pub clock: SharedClock,
    /// Who is connected, by user: the socket cap and abandoned calls.
    pub presence: Arc<Presence>,
    pub limits: Arc<Limits>,
    /// REST requests being handled now, for the graceful stop.
    pub in_flight: Arc<InFlight>,
    /// Several nodes: how this node's bus listener is doing.
    pub bus: Option<Arc<BusHealth>>,
    /// Several nodes: whether Redis (the shared rooms) answers.
    pub redis: Option<Arc<crate::cluster::RedisHealth>>,
    /// ICE servers and TURN credentials for clients (CONTRACT §9).
    pub ice: Arc<crate::ice::IceSettings>,
    /// The PeerJS broker, unless `PEERJS_PATH` is empty.
    pub peerjs: Option<Arc<crate::peerjs::broker::Broker>>,
    /// This node's counters, for the admin view.
    pub activity: Arc<crate::activity::Activity>,
}
