//! What must hold in the database whatever clients did, read straight
//! from the tables:
//! - at most one live queue or direct call per host and per guest;
//! - every queue entry agrees with its call (READY while invited, IN_CALL
//!   while the call is in progress), and every live queue call's entry
//!   points at it;
//! - every entity's audit rows form one chain, from its creation
//!   (`from` empty) through each transition (each `from` the previous
//!   `to`), to its status now;
//! - no invitation is overdue (the timer keeps up, restarts included).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use consultd_persistence::entity::{audit_log, call_session, chat_session, queue_entry, schedule};
use sea_orm::{Database, EntityTrait, IsolationLevel, QueryOrder, TransactionTrait};

const LIVE: [&str; 3] = ["INVITED", "CONFIRMED", "ACTIVE"];

/// What was checked, for the report.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub(crate) calls: usize,
    pub(crate) entries: usize,
    pub(crate) schedules: usize,
    pub(crate) chats: usize,
    pub(crate) audit_rows: usize,
}

/// Reads everything and returns the violations found (empty: all hold).
/// `overdue_after`: an invitation this long past `expires_at` and still
/// INVITED is a violation (`None` skips that check).
pub(crate) async fn check(
    url: &str,
    overdue_after: Option<chrono::Duration>,
) -> Result<(Checked, Vec<String>), String> {
    let db = Database::connect(url).await.map_err(|e| e.to_string())?;
    let err = |e: sea_orm::DbErr| e.to_string();
    // One snapshot of every table: the server may be running (timers fire),
    // and tables read one after another would mix before and after a commit.
    let isolation = url
        .starts_with("postgres")
        .then_some(IsolationLevel::RepeatableRead);
    let snap = db.begin_with_config(isolation, None).await.map_err(err)?;
    let calls = call_session::Entity::find().all(&snap).await.map_err(err)?;
    let entries = queue_entry::Entity::find().all(&snap).await.map_err(err)?;
    let schedules = schedule::Entity::find().all(&snap).await.map_err(err)?;
    let chats = chat_session::Entity::find().all(&snap).await.map_err(err)?;
    let audit = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::At)
        .order_by_asc(audit_log::Column::Id)
        .all(&snap)
        .await
        .map_err(err)?;
    let _ = snap.rollback().await;
    let _ = db.close().await;
    let mut bad = Vec::new();

    // One live call per host and per guest (tutoring sessions do not count).
    let mut per_user: HashMap<(&str, &str), usize> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.kind != "tutoring" && LIVE.contains(&c.status.as_str()))
    {
        *per_user.entry(("host", &c.host_id)).or_default() += 1;
        *per_user.entry(("guest", &c.guest_id)).or_default() += 1;
    }
    for ((side, user), n) in per_user {
        if n > 1 {
            bad.push(format!("{side} {user} has {n} live calls"));
        }
    }

    // Entries and their calls.
    let by_id: HashMap<&str, &call_session::Model> =
        calls.iter().map(|c| (c.id.as_str(), c)).collect();
    for e in &entries {
        let call = e.call_id.as_deref().and_then(|id| by_id.get(id));
        match (e.status.as_str(), call) {
            ("READY", Some(c)) if c.status != "INVITED" => {
                bad.push(format!(
                    "entry {} READY with call {} {}",
                    e.id, c.id, c.status
                ));
            }
            ("IN_CALL", Some(c)) if !matches!(c.status.as_str(), "CONFIRMED" | "ACTIVE") => {
                bad.push(format!(
                    "entry {} IN_CALL with call {} {}",
                    e.id, c.id, c.status
                ));
            }
            ("IN_CALL", None) => bad.push(format!("entry {} IN_CALL without its call", e.id)),
            _ => {}
        }
    }
    let entry_by_id: HashMap<&str, &queue_entry::Model> =
        entries.iter().map(|e| (e.id.as_str(), e)).collect();
    for c in calls
        .iter()
        .filter(|c| c.kind == "queue" && LIVE.contains(&c.status.as_str()))
    {
        let Some(e) = c
            .queue_entry_id
            .as_deref()
            .and_then(|id| entry_by_id.get(id))
        else {
            bad.push(format!("live queue call {} has no entry", c.id));
            continue;
        };
        let want = if c.status == "INVITED" {
            "READY"
        } else {
            "IN_CALL"
        };
        if e.status != want || e.call_id.as_deref() != Some(c.id.as_str()) {
            bad.push(format!(
                "call {} {} but its entry {} is {} (call {:?})",
                c.id, c.status, e.id, e.status, e.call_id
            ));
        }
    }

    // Audit chains.
    let mut chains: BTreeMap<&str, Vec<&audit_log::Model>> = BTreeMap::new();
    for row in &audit {
        chains.entry(row.entity_id.as_str()).or_default().push(row);
    }
    let statuses = calls
        .iter()
        .map(|c| (c.id.as_str(), c.status.as_str()))
        .chain(entries.iter().map(|e| (e.id.as_str(), e.status.as_str())))
        .chain(schedules.iter().map(|s| (s.id.as_str(), s.status.as_str())))
        .chain(chats.iter().map(|c| (c.id.as_str(), c.status.as_str())));
    for (id, status) in statuses {
        let Some(rows) = chains.get(id) else {
            bad.push(format!("{id} ({status}) has no audit row"));
            continue;
        };
        if rows[0].from_state.is_some() {
            bad.push(format!(
                "{id}: first audit row is not its creation: {}",
                rows[0].action
            ));
        }
        for pair in rows.windows(2) {
            if pair[1].from_state.as_deref() != Some(pair[0].to_state.as_str()) {
                bad.push(format!(
                    "{id}: audit {} ({:?} → {}) does not follow {} (→ {})",
                    pair[1].action,
                    pair[1].from_state,
                    pair[1].to_state,
                    pair[0].action,
                    pair[0].to_state
                ));
            }
        }
        let last = rows[rows.len() - 1];
        if last.to_state != status {
            bad.push(format!(
                "{id} is {status} but its last audit row says {}",
                last.to_state
            ));
        }
    }

    if let Some(late) = overdue_after {
        let now: DateTime<Utc> = Utc::now();
        for c in calls.iter().filter(|c| c.status == "INVITED") {
            if c.expires_at + late < now {
                bad.push(format!(
                    "invitation {} still INVITED {} after it expired",
                    c.id,
                    now - c.expires_at
                ));
            }
        }
    }
    let checked = Checked {
        calls: calls.len(),
        entries: entries.len(),
        schedules: schedules.len(),
        chats: chats.len(),
        audit_rows: audit.len(),
    };
    Ok((checked, bad))
}

/// The audit rows of one entity, oldest first: (action, to_state).
pub(crate) async fn audit_of(url: &str, id: &str) -> Result<Vec<(String, String)>, String> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let db = Database::connect(url).await.map_err(|e| e.to_string())?;
    let rows = audit_log::Entity::find()
        .filter(audit_log::Column::EntityId.eq(id))
        .order_by_asc(audit_log::Column::At)
        .order_by_asc(audit_log::Column::Id)
        .all(&db)
        .await
        .map_err(|e| e.to_string())?;
    let _ = db.close().await;
    Ok(rows.into_iter().map(|r| (r.action, r.to_state)).collect())
}
