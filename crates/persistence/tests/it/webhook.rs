//! The webhook outbox: claim order per entity and URL, leases, retries,
//! give-up, and (on PostgreSQL) concurrent claimers that never share a row.

use chrono::{TimeZone, Utc};
use consultd_persistence::testing::TestDatabase;
use consultd_persistence::{Db, NewDelivery, WebhookRepo};

fn row(event: &str, target: &str, entity: &str) -> NewDelivery {
    NewDelivery {
        event_id: event.into(),
        target: target.into(),
        entity_key: entity.into(),
        body: format!("{{\"id\":\"{event}\"}}"),
    }
}

async fn migrated() -> Vec<(TestDatabase, Db)> {
    let mut all = Vec::new();
    for tdb in TestDatabase::each_backend().await.expect("test databases") {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        all.push((tdb, db));
    }
    all
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
}

fn events(claimed: &[consultd_persistence::Delivery]) -> Vec<&str> {
    claimed.iter().map(|d| d.event_id.as_str()).collect()
}

#[tokio::test]
async fn one_entity_is_delivered_one_event_at_a_time_per_url() {
    for (_tdb, db) in migrated().await {
        let txn = db.begin_write().await.unwrap();
        let rows = vec![
            row("a1", "http://one", "call:a"),
            row("a1", "http://two", "call:a"),
            row("b1", "http://one", "call:b"),
            row("a2", "http://one", "call:a"),
            row("a2", "http://two", "call:a"),
        ];
        WebhookRepo.enqueue(&*txn, rows, now()).await.unwrap();
        txn.commit().await.unwrap();

        // The head of each (URL, entity) chain, oldest first; a2 waits.
        let first = WebhookRepo.claim(&db, 1_000, 60_000, 10).await.unwrap();
        assert_eq!(events(&first), ["a1", "a1", "b1"]);
        // Leased: nothing more until the lease runs out or a result lands.
        assert!(
            WebhookRepo
                .claim(&db, 2_000, 60_000, 10)
                .await
                .unwrap()
                .is_empty()
        );

        // a1 reached one URL; the other failed and retries later. a2 is
        // free for the first URL only: the second still owes a1.
        WebhookRepo
            .delivered(db.conn(), first[0].seq)
            .await
            .unwrap();
        WebhookRepo
            .retry_later(db.conn(), first[1].seq, 5_000, "HTTP 500")
            .await
            .unwrap();
        let second = WebhookRepo.claim(&db, 3_000, 60_000, 10).await.unwrap();
        assert_eq!(events(&second), ["a2"]);
        assert_eq!(second[0].target, "http://one");

        // Due again at 5 s, with its failed attempt counted.
        let third = WebhookRepo.claim(&db, 5_000, 60_000, 10).await.unwrap();
        assert_eq!(events(&third), ["a1"]);
        assert_eq!(
            (third[0].target.as_str(), third[0].attempts),
            ("http://two", 1)
        );

        // Given up on: dead, kept, and no longer holding a2 back.
        WebhookRepo
            .give_up(db.conn(), third[0].seq, "gave up")
            .await
            .unwrap();
        let fourth = WebhookRepo.claim(&db, 6_000, 60_000, 10).await.unwrap();
        assert_eq!(events(&fourth), ["a2"]);
        assert_eq!(fourth[0].target, "http://two");
        let depth = WebhookRepo.depth(db.conn()).await.unwrap();
        assert_eq!((depth.pending, depth.dead), (3, 1));
        let dead = WebhookRepo.dead(db.conn(), 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0.event_id, "a1");
        assert_eq!(dead[0].1.as_deref(), Some("gave up"));
    }
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again() {
    for (_tdb, db) in migrated().await {
        let txn = db.begin_write().await.unwrap();
        WebhookRepo
            .enqueue(&*txn, vec![row("e1", "http://one", "chat:1")], now())
            .await
            .unwrap();
        txn.commit().await.unwrap();
        let first = WebhookRepo.claim(&db, 0, 30_000, 10).await.unwrap();
        assert_eq!(events(&first), ["e1"]);
        assert!(
            WebhookRepo
                .claim(&db, 29_999, 30_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Its worker died: the same row, the same event id.
        let again = WebhookRepo.claim(&db, 30_000, 30_000, 10).await.unwrap();
        assert_eq!(again, first);
    }
}

#[tokio::test]
async fn a_rolled_back_transition_leaves_no_delivery() {
    for (_tdb, db) in migrated().await {
        let txn = db.begin_write().await.unwrap();
        WebhookRepo
            .enqueue(&*txn, vec![row("r1", "http://one", "call:r")], now())
            .await
            .unwrap();
        drop(txn);
        assert!(
            WebhookRepo
                .claim(&db, 0, 1_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(WebhookRepo.depth(db.conn()).await.unwrap().pending, 0);
    }
}

/// Several nodes claim at once: every row goes to exactly one of them.
#[tokio::test]
async fn concurrent_claimers_never_share_a_row() {
    for (_tdb, db) in migrated().await {
        let txn = db.begin_write().await.unwrap();
        let rows = (0..200)
            .map(|i| row(&format!("ev{i}"), "http://one", &format!("call:{i}")))
            .collect();
        WebhookRepo.enqueue(&*txn, rows, now()).await.unwrap();
        txn.commit().await.unwrap();
        let claimers = (0..4).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = WebhookRepo.claim(&db, 0, 60_000, 7).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|d| d.seq));
                }
            })
        });
        let mut all = Vec::new();
        for c in claimers {
            all.extend(c.await.unwrap());
        }
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(count, 200, "a row was claimed twice or never");
        assert_eq!(all.len(), 200);
    }
}
