//! The bus between nodes on a real PostgreSQL (`TEST_DATABASE_URL`): commit
//! order, rollbacks, large messages, schema isolation, and a listener
//! whose connection is killed. Without PostgreSQL there is no bus, and
//! these tests say so and return (CI runs them in its PostgreSQL step).

use std::time::Duration;

use consultd_persistence::bus::{Bus, Heard, INLINE_LIMIT, Listener};
use consultd_persistence::testing::{TEST_DATABASE_URL, TestDatabase};
use consultd_persistence::{Db, RepoError};
use sea_orm::{ConnectionTrait, Statement};

async fn postgres() -> Option<(TestDatabase, Db, Bus)> {
    let Ok(url) = std::env::var(TEST_DATABASE_URL) else {
        eprintln!("skipped: the bus needs PostgreSQL ({TEST_DATABASE_URL})");
        return None;
    };
    let tdb = TestDatabase::postgres(&url).await.expect("schema");
    let db = Db::connect(&tdb.url).await.expect("connect");
    db.migrate_up().await.expect("migrate");
    let bus = Bus::of(&db).await.expect("bus");
    Some((tdb, db, bus))
}

async fn publish_committed(db: &Db, bus: &Bus, message: &str) {
    let txn = db.begin_write().await.unwrap();
    bus.publish(&*txn, message).await.unwrap();
    txn.commit().await.unwrap();
}

async fn heard(listener: &mut Listener) -> Heard {
    tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .expect("heard nothing within 10 s")
        .expect("listener failed")
}

async fn message(listener: &mut Listener) -> String {
    match heard(listener).await {
        Heard::Message(m) => m,
        Heard::Gap => panic!("a gap where a message was due"),
    }
}

#[tokio::test]
async fn messages_arrive_in_commit_order_and_rollbacks_never() {
    let Some((tdb, db, bus)) = postgres().await else {
        return;
    };
    let mut listener = bus.listen(&db).await.unwrap();

    // Published first, committed second: heard second.
    let first = db.begin_write().await.unwrap();
    bus.publish(&*first, r#"{"n":1}"#).await.unwrap();
    let second = db.begin_write().await.unwrap();
    bus.publish(&*second, r#"{"n":2}"#).await.unwrap();
    second.commit().await.unwrap();
    first.commit().await.unwrap();

    let rolled_back = db.begin_write().await.unwrap();
    bus.publish(&*rolled_back, r#"{"n":"never"}"#)
        .await
        .unwrap();
    drop(rolled_back);
    publish_committed(&db, &bus, r#"{"n":3}"#).await;

    assert_eq!(message(&mut listener).await, r#"{"n":2}"#);
    assert_eq!(message(&mut listener).await, r#"{"n":1}"#);
    assert_eq!(message(&mut listener).await, r#"{"n":3}"#);

    // Many in a row keep their order.
    for i in 0..200 {
        publish_committed(&db, &bus, &format!(r#"{{"i":{i}}}"#)).await;
    }
    for i in 0..200 {
        assert_eq!(message(&mut listener).await, format!(r#"{{"i":{i}}}"#));
    }
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_message_over_the_notification_limit_arrives_whole() {
    let Some((tdb, db, bus)) = postgres().await else {
        return;
    };
    let mut listener = bus.listen(&db).await.unwrap();
    let at_limit = format!(r#"["{}"]"#, "a".repeat(INLINE_LIMIT - 4));
    assert_eq!(at_limit.len(), INLINE_LIMIT);
    let large = format!(r#"["{}"]"#, "é".repeat(40_000));
    publish_committed(&db, &bus, &at_limit).await;
    publish_committed(&db, &bus, &large).await;
    publish_committed(&db, &bus, "[1]").await;
    assert_eq!(message(&mut listener).await, at_limit);
    assert_eq!(message(&mut listener).await, large);
    assert_eq!(message(&mut listener).await, "[1]");
    tdb.cleanup().await;
}

#[tokio::test]
async fn deployments_in_other_schemas_hear_nothing() {
    let Some((tdb_a, db_a, bus_a)) = postgres().await else {
        return;
    };
    let (tdb_b, db_b, bus_b) = postgres().await.unwrap();
    assert_ne!(bus_a.channel(), bus_b.channel());
    let mut listener_b = bus_b.listen(&db_b).await.unwrap();
    publish_committed(&db_a, &bus_a, r#""for a""#).await;
    publish_committed(&db_b, &bus_b, r#""for b""#).await;
    assert_eq!(message(&mut listener_b).await, r#""for b""#);
    tdb_a.cleanup().await;
    tdb_b.cleanup().await;
}

#[tokio::test]
async fn a_killed_listener_connection_is_one_gap_then_it_hears_again() {
    let Some((tdb, db, bus)) = postgres().await else {
        return;
    };
    let mut listener = bus.listen(&db).await.unwrap();
    publish_committed(&db, &bus, r#""before""#).await;
    assert_eq!(message(&mut listener).await, r#""before""#);

    let killed = db
        .conn()
        .query_all_raw(Statement::from_string(
            db.conn().get_database_backend(),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE query = 'LISTEN \"{}\"'",
                bus.channel()
            ),
        ))
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "the listener's session was not found");

    assert_eq!(heard(&mut listener).await, Heard::Gap);
    publish_committed(&db, &bus, r#""after""#).await;
    assert_eq!(message(&mut listener).await, r#""after""#);
    tdb.cleanup().await;
}

#[tokio::test]
async fn sqlite_has_no_bus() {
    let tdb = TestDatabase::sqlite();
    let db = Db::connect(&tdb.url).await.unwrap();
    assert!(matches!(Bus::of(&db).await, Err(RepoError::BadUrl(_))));
}
