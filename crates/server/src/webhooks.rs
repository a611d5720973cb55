//! Webhook delivery (CONTRACT §10): a worker that claims outbox rows (see
//! `WebhookRepo`), POSTs them signed, and records the result.
//!
//! - At least once: a row goes only once the receiver answered 2xx; a node
//!   that dies mid-delivery leaves its lease to run out, and any node then
//!   sends the row again, with the same event id.
//! - In order per entity and URL: the claim only hands out the oldest
//!   pending row of each entity, so the next waits for this one.
//! - Failures retry with exponential backoff plus jitter; past the give-up
//!   time a row is kept as `dead` and the entity's next event goes.
//!
//! The signature is Stripe's scheme: `t=<unix seconds>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<body>")>`, computed afresh at every attempt so
//! that a receiver can refuse stale (replayed) requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use consultd_persistence::{Db, Delivery, WebhookRepo};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, Semaphore};

use crate::activity::Activity;
use crate::clock::SharedClock;
use crate::config::WebhookConfig;
use crate::telemetry::{WEBHOOK_DEAD, WEBHOOK_DELIVERIES, WEBHOOK_PENDING};

/// The header receivers verify.
pub const SIGNATURE_HEADER: &str = "Consultd-Signature";

const USER_AGENT: &str = concat!("consultd/", env!("CARGO_PKG_VERSION"));

/// How often the worker looks for due rows when nothing woke it: retries
/// coming due, and rows other nodes wrote.
const POLL: Duration = Duration::from_millis(500);

/// How often the outbox depth gauges are refreshed.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// A lease outlives an attempt by this much before another worker may take
/// the row over.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The `Consultd-Signature` value for `body` sent at `unix_secs`.
pub fn signature(secret: &str, unix_secs: u64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_secs},v1={hex}")
}

/// The delay before attempt `failed + 1`: `min · 2^(failed-1)`, capped at
/// `max`, plus up to a fifth more at random so that retries after an outage
/// do not arrive in step.
pub fn backoff(failed: u32, min: Duration, max: Duration) -> Duration {
    let doubling = 2u32.saturating_pow(failed.saturating_sub(1).min(30));
    let base = min.saturating_mul(doubling).min(max);
    base + base.mul_f64(fastrand::f64() * 0.2)
}

pub struct Worker {
    db: Db,
    clock: SharedClock,
    wake: Arc<Notify>,
    /// Where the admin view reads the outbox depth this worker last read.
    activity: Arc<Activity>,
    secret: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    retry_min: Duration,
    retry_max: Duration,
    give_up: chrono::Duration,
    slots: Arc<Semaphore>,
}

/// How one attempt ended.
enum Outcome {
    Delivered,
    Failed(String),
}

impl Worker {
    /// `None` when no receiver is configured (`targets` is
    /// [`WebhookConfig::targets`], parsed once at start).
    pub fn new(
        config: &WebhookConfig,
        targets: &[String],
        db: Db,
        clock: SharedClock,
        wake: Arc<Notify>,
        activity: Arc<Activity>,
    ) -> Result<Option<Self>, String> {
        if targets.is_empty() {
            return Ok(None);
        }
        let secret = config.webhook_secret.clone().unwrap_or_default();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.webhook_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("webhook TLS: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // Redirects are not followed (this client never does): one would
        // resend a signed body somewhere unconfigured.
        let client = Client::builder(TokioExecutor::new()).build(https);
        let give_up = chrono::Duration::from_std(config.webhook_give_up)
            .map_err(|_| "WEBHOOK_GIVE_UP is too long".to_owned())?;
        Ok(Some(Self {
            db,
            clock,
            wake,
            activity,
            secret,
            client,
            timeout: config.webhook_timeout,
            retry_min: config.webhook_retry_min,
            retry_max: config.webhook_retry_max,
            give_up,
            slots: Arc::new(Semaphore::new(config.webhook_concurrency as usize)),
        }))
    }

    /// Runs until the task is dropped. Deliveries in flight at that moment
    /// are sent again by whichever worker next finds their lease expired.
    pub async fn run(self) {
        let this = Arc::new(self);
        let lease = this.timeout + LEASE_MARGIN;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let mut depth_at = tokio::time::Instant::now();
        loop {
            if depth_at <= tokio::time::Instant::now() {
                this.report_depth().await;
                depth_at = tokio::time::Instant::now() + DEPTH_EVERY;
            }
            let free = this.slots.available_permits();
            let mut full = false;
            if free > 0 {
                let now_ms = this.clock.now().timestamp_millis();
                match WebhookRepo
                    .claim(&this.db, now_ms, lease_ms, free as u64)
                    .await
                {
                    Ok(rows) => {
                        full = rows.len() == free;
                        for row in rows {
                            let Ok(slot) = this.slots.clone().acquire_owned().await else {
                                return;
                            };
                            let worker = this.clone();
                            tokio::spawn(async move {
                                worker.deliver(row).await;
                                drop(slot);
                                worker.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook outbox unreadable; retrying"),
                }
            }
            if full && this.slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = this.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn report_depth(&self) {
        match WebhookRepo.depth(self.db.conn()).await {
            Ok(depth) => {
                self.activity.outbox_read(depth);
                #[allow(clippy::cast_precision_loss)] // a gauge
                {
                    metrics::gauge!(WEBHOOK_PENDING).set(depth.pending as f64);
                    metrics::gauge!(WEBHOOK_DEAD).set(depth.dead as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "webhook outbox depth unreadable"),
        }
    }

    #[tracing::instrument(name = "webhook", skip_all, fields(event = %row.event_id, target = %row.target))]
    async fn deliver(&self, row: Delivery) {
        let outcome = self.attempt(&row).await;
        let conn = self.db.conn();
        let recorded = match outcome {
            Outcome::Delivered => {
                metrics::counter!(WEBHOOK_DELIVERIES, "result" => "delivered").increment(1);
                WebhookRepo.delivered(conn, row.seq).await
            }
            Outcome::Failed(error) => {
                let now = self.clock.now();
                let failed = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
                if now - row.created_at >= self.give_up {
                    metrics::counter!(WEBHOOK_DELIVERIES, "result" => "dead").increment(1);
                    tracing::warn!(attempts = failed, %error, "webhook given up on");
                    WebhookRepo.give_up(conn, row.seq, &error).await
                } else {
                    metrics::counter!(WEBHOOK_DELIVERIES, "result" => "failed").increment(1);
                    let delay = backoff(failed, self.retry_min, self.retry_max);
                    let delay = chrono::Duration::from_std(delay).unwrap_or(self.give_up);
                    let next = (now + delay).timestamp_millis();
                    tracing::info!(attempts = failed, %error, "webhook attempt failed; retrying");
                    WebhookRepo.retry_later(conn, row.seq, next, &error).await
                }
            }
        };
        if let Err(e) = recorded {
            // The lease runs out and the row is tried again: at least once.
            tracing::warn!(error = %e, "webhook result not recorded");
        }
    }

    async fn attempt(&self, row: &Delivery) -> Outcome {
        let sent_at = crate::clock::unix_ms() / 1000;
        let request = http::Request::post(row.target.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(
                SIGNATURE_HEADER,
                signature(&self.secret, sent_at, &row.body),
            )
            .header("Consultd-Event-Id", row.event_id.as_str())
            .body(Full::new(Bytes::from(row.body.clone())));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("unsendable: {e}")),
        };
        // The status is all that counts; the response body is not read.
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(resp)) if resp.status().is_success() => Outcome::Delivered,
            Ok(Ok(resp)) => Outcome::Failed(format!("HTTP {}", resp.status().as_u16())),
            Ok(Err(e)) if e.is_connect() => Outcome::Failed(format!("connect: {e}")),
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::Failed("timed out".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_stripes_scheme() {
        // HMAC-SHA256("whsec", "1700000000.{}"), computed independently
        // with `openssl dgst -sha256 -hmac whsec`.
        let sig = signature("whsec", 1_700_000_000, "{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=7d44587dddbaf4c7f70fef20f48cd594834ffea1641e3ac227b84408298738af"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for (failed, base) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60)] {
            let d = backoff(failed, min, max);
            let base = Duration::from_secs(base);
            assert!(d >= base && d <= base.mul_f64(1.2), "{failed}: {d:?}");
        }
    }
}
