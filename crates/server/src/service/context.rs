//! What every service shares: the database, the transport ports, the order
//! lock, the deadline timer, the clock, and the journal every transition
//! writes its audit and webhook rows through.

use std::sync::Arc;

use consultd_domain::{Principal, Timestamp};
use consultd_persistence::bus::Bus;
use consultd_persistence::{Db, WriteTxn};

use super::journal::Journal;
use super::order::Sequencer;
use super::outbox::{Notice, Notices, Outbox, RoomControl};
use super::peers::PeerDirectory;
use crate::clock::SharedClock;
use crate::error::ApiError;
use crate::timers::{Deadline, Timer};

/// Stripes of the order lock (see [`Sequencer`]).
const ORDER_STRIPES: usize = 64;

pub struct Context {
    pub db: Db,
    pub outbox: Arc<dyn Outbox>,
    pub rooms: Arc<dyn RoomControl>,
    /// Who holds which PeerJS id (the media broker).
    pub peers: Arc<dyn PeerDirectory>,
    /// Keyed by schedule id (queue calls and queue changes share it), by
    /// call id (calls without a schedule) or by chat session id.
    pub(crate) order: Sequencer,
    pub timer: Timer,
    pub clock: SharedClock,
    /// Several nodes: notices go over the bus, and every node's listener
    /// (this one's too) delivers them, in commit order.
    pub bus: Option<Bus>,
    pub(crate) journal: Journal,
}

/// The transport's side of the services: what they push, close and ask.
pub struct Ports {
    pub outbox: Arc<dyn Outbox>,
    pub rooms: Arc<dyn RoomControl>,
    pub peers: Arc<dyn PeerDirectory>,
}

impl Context {
    pub fn new(
        db: Db,
        ports: Ports,
        timer: Timer,
        clock: SharedClock,
        bus: Option<Bus>,
        journal: Journal,
    ) -> Arc<Self> {
        let Ports {
            outbox,
            rooms,
            peers,
        } = ports;
        Arc::new(Self {
            db,
            outbox,
            rooms,
            peers,
            order: Sequencer::new(ORDER_STRIPES),
            timer,
            clock,
            bus,
            journal,
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Commits `txn`, then hands its notices over in order. The order lock
    /// for `key` is held from just before the commit until they are out, so
    /// that two commits on one key are announced in commit order (see
    /// [`Sequencer`]); take it only once every read and write is done.
    pub(crate) async fn commit_with(
        &self,
        txn: WriteTxn,
        key: &str,
        notices: Notices,
    ) -> Result<(), ApiError> {
        if let Some(bus) = &self.bus {
            // PostgreSQL delivers notifications in commit order, to every
            // node: no lock of ours is needed for that order.
            if !notices.is_empty() {
                let wire = notices.to_wire(crate::clock::unix_ms()).map_err(|e| {
                    tracing::error!(error = %e, "notices not encodable");
                    ApiError::Internal
                })?;
                bus.publish(&*txn, &wire).await?;
            }
            return self.commit(txn).await;
        }
        let _ordered = self.order.lock(key).await;
        self.commit(txn).await?;
        for notice in notices.into_vec() {
            match notice {
                Notice::Push(to, push) => self.outbox.push(to, *push).await,
                Notice::CloseCall(call) => self.rooms.close_call(&call),
                Notice::ChatEnded(chat) => self.rooms.chat_ended(&chat),
                Notice::Deadline(at, what) => self.timer.at(at, what),
            }
        }
        Ok(())
    }

    /// Commits a transaction that announces nothing.
    pub(crate) async fn commit(&self, txn: WriteTxn) -> Result<(), ApiError> {
        txn.commit().await?;
        self.journal.committed();
        Ok(())
    }

    pub(crate) fn at(&self, when: Timestamp, what: Deadline) {
        self.timer.at(when, what);
    }
}

/// A fresh, time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn require_host(p: &Principal) -> Result<(), ApiError> {
    if p.is_host() {
        Ok(())
    } else {
        Err(ApiError::forbidden("only a host may do this"))
    }
}

pub(crate) fn require_guest(p: &Principal) -> Result<(), ApiError> {
    if p.is_guest() {
        Ok(())
    } else {
        Err(ApiError::forbidden("only a guest may do this"))
    }
}
