//! Repository tests: always on SQLite, and on PostgreSQL too when
//! `TEST_DATABASE_URL` is set.

use chrono::{Duration, TimeZone, Utc};
use consultd_persistence::testing::TestDatabase;
use consultd_persistence::{AuditRepo, Backend, Db, NewAuditEntry};

async fn databases() -> Vec<TestDatabase> {
    TestDatabase::each_backend().await.expect("test databases")
}

fn entry(entity: &str, from: Option<&str>, to: &str, at_ms: i64) -> NewAuditEntry {
    let base = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
    NewAuditEntry {
        actor_id: Some("7".into()),
        actor_role: Some("doctor".into()),
        action: "confirm".into(),
        entity_type: "call_session".into(),
        entity_id: entity.into(),
        from_state: from.map(str::to_owned),
        to_state: to.into(),
        at: base + Duration::milliseconds(at_ms),
    }
}

#[tokio::test]
async fn migrations_apply_report_and_roll_back() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        assert_eq!(db.backend() == Backend::Postgres, tdb.is_postgres());
        let before = db.migration_status().await.unwrap();
        assert!(!before.is_empty());
        assert!(before.iter().all(|m| !m.applied), "{before:?}");

        db.migrate_up().await.unwrap();
        // Running again is a no-op, as on every server start.
        db.migrate_up().await.unwrap();
        let after = db.migration_status().await.unwrap();
        assert!(after.iter().all(|m| m.applied), "{after:?}");
        assert_eq!(
            after.iter().map(|m| &m.name).collect::<Vec<_>>(),
            before.iter().map(|m| &m.name).collect::<Vec<_>>()
        );

        db.migrate_down(1).await.unwrap();
        let down = db.migration_status().await.unwrap();
        assert!(!down.last().unwrap().applied);
        assert!(down[0].applied);
        // Every step back, down to an empty schema.
        db.migrate_down(u32::try_from(before.len()).unwrap())
            .await
            .unwrap();
        let empty = db.migration_status().await.unwrap();
        assert!(empty.iter().all(|m| !m.applied), "{empty:?}");
        let err = AuditRepo
            .for_entity(db.conn(), "x", 10)
            .await
            .expect_err("the table is gone after rolling back");
        drop(err);
        db.migrate_up().await.unwrap();
        db.ping().await.unwrap();
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn audit_entries_round_trip_in_time_order_per_entity() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let repo = AuditRepo;

        // Written out of time order on purpose: reads come back ordered by `at`.
        let second = repo
            .record(db.conn(), entry("call-1", Some("CONFIRMED"), "ACTIVE", 20))
            .await
            .unwrap();
        let first = repo
            .record(db.conn(), entry("call-1", Some("INVITED"), "CONFIRMED", 10))
            .await
            .unwrap();
        let mut timer = entry("call-2", Some("INVITED"), "EXPIRED", 15);
        timer.actor_id = None;
        timer.actor_role = None;
        let other = repo.record(db.conn(), timer.clone()).await.unwrap();

        let call1 = repo.for_entity(db.conn(), "call-1", 100).await.unwrap();
        assert_eq!(call1, vec![first.clone(), second.clone()]);
        assert_eq!(call1[0].from_state.as_deref(), Some("INVITED"));
        assert_eq!(
            call1[0].at,
            entry("", None, "", 10).at,
            "millisecond precision kept"
        );

        let call2 = repo.for_entity(db.conn(), "call-2", 100).await.unwrap();
        assert_eq!(call2, vec![other.clone()]);
        assert_eq!(call2[0].actor_id, None);

        assert!(
            repo.for_entity(db.conn(), "nope", 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            repo.for_entity(db.conn(), "call-1", 1).await.unwrap(),
            vec![first]
        );

        let latest = repo.latest(db.conn(), 2).await.unwrap();
        assert_eq!(latest, vec![second, other]);
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn an_audit_row_rolls_back_with_its_transaction() {
    use sea_orm::TransactionTrait;
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let txn = db.conn().begin().await.unwrap();
        AuditRepo
            .record(&txn, entry("call-9", None, "INVITED", 0))
            .await
            .unwrap();
        txn.rollback().await.unwrap();
        assert!(
            AuditRepo
                .for_entity(db.conn(), "call-9", 10)
                .await
                .unwrap()
                .is_empty()
        );
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn bad_urls_are_refused_with_a_clear_error() {
    let err = Db::connect("mysql://localhost/x").await.unwrap_err();
    assert!(err.to_string().contains("sqlite: or postgres://"), "{err}");
    let err = Db::connect("postgres://127.0.0.1:1/none")
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
}

#[tokio::test]
async fn a_server_secret_is_made_once_and_read_by_every_later_caller() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let conn = db.conn();
        let now = chrono::Utc::now();
        let repo = consultd_persistence::SecretRepo;
        let first = repo
            .get_or_create(conn, "k", "first".into(), now)
            .await
            .unwrap();
        assert_eq!(first, "first");
        // A second node starting later (or at once) keeps the first value.
        let (a, b) = tokio::join!(
            repo.get_or_create(conn, "k", "second".into(), now),
            repo.get_or_create(conn, "k", "third".into(), now),
        );
        assert_eq!((a.unwrap(), b.unwrap()), ("first".into(), "first".into()));
        assert_eq!(
            repo.get_or_create(conn, "other", "x".into(), now)
                .await
                .unwrap(),
            "x"
        );
        tdb.cleanup().await;
    }
}
