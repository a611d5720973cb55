//! What every handler shares.

use std::sync::Arc;

use consultd_persistence::Db;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::service::ConsultService;
use crate::socket::Rooms;

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub auth: Arc<Authenticator>,
    pub metrics: PrometheusHandle,
    pub consult: ConsultService,
    /// The signaling rooms of this node (CONTRACT §3).
    pub rooms: Arc<Rooms>,
}
