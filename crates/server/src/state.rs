//! What every handler shares.

use std::sync::Arc;

use consultd_persistence::Db;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::service::ConsultService;

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub auth: Arc<Authenticator>,
    pub metrics: PrometheusHandle,
    pub consult: ConsultService,
}
