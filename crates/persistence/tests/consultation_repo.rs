//! The storage half of the contract's "at most one" rules: compare-and-set
//! transitions and the live-row unique indexes, exercised directly (without
//! the service's row locks) on SQLite and, with `TEST_DATABASE_URL`, on
//! PostgreSQL.

use chrono::{Duration, TimeZone, Utc};
use consultd_domain::*;
use consultd_persistence::testing::TestDatabase;
use consultd_persistence::{CallRecord, CallRepo, Db, QueueRepo, RepoError, ScheduleRepo};

async fn databases() -> Vec<TestDatabase> {
    TestDatabase::each_backend().await.expect("test databases")
}

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

async fn online_schedule(db: &Db, id: &str, host: &str) -> Schedule {
    let mut s = Schedule::create(
        ScheduleId::new(id),
        user(host),
        Slot::parse("2026-11-21", "09:00", "17:00").unwrap(),
        t0(),
    );
    ScheduleRepo.insert(db.conn(), &s).await.unwrap();
    let t = s
        .handle(&user(host), ScheduleCommand::Start)
        .unwrap()
        .unwrap();
    ScheduleRepo.apply(db.conn(), &s.id, t, t0()).await.unwrap();
    s
}

fn call(id: &str, host: &str, guest: &str, at: Timestamp) -> CallRecord {
    let call = Call::invite(
        CallId::new(id),
        Party::new(user(host), Some("Dr".into())),
        Party::new(user(guest), None),
        Side::Host,
        at,
        Duration::seconds(60),
    )
    .unwrap();
    CallRecord {
        room_id: id.to_owned(),
        call,
        schedule_id: None,
        queue_entry_id: None,
        appointment_id: None,
        call_type: "video".into(),
    }
}

#[tokio::test]
async fn a_stale_compare_and_set_is_a_conflict_and_writes_nothing() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let s = online_schedule(&db, "s1", "d1").await;
        // ONLINE → COMPLETED once; the same compare-and-set again loses.
        let t = Transition::new(ScheduleStatus::Online, ScheduleStatus::Completed);
        ScheduleRepo.apply(db.conn(), &s.id, t, t0()).await.unwrap();
        assert!(matches!(
            ScheduleRepo.apply(db.conn(), &s.id, t, t0()).await,
            Err(RepoError::Conflict)
        ));
        let stored = ScheduleRepo.find(db.conn(), "s1").await.unwrap().unwrap();
        assert_eq!(stored.status, ScheduleStatus::Completed);

        // A call: two confirms from the same snapshot, one wins.
        let mut rec = call("c1", "d1", "p1", t0());
        CallRepo.insert(db.conn(), &rec).await.unwrap();
        let mut other = rec.clone();
        let t = rec
            .call
            .handle(&user("p1"), CallCommand::Confirm, t0())
            .unwrap()
            .unwrap();
        let t2 = other
            .call
            .handle(&user("p1"), CallCommand::Decline, t0())
            .unwrap()
            .unwrap();
        CallRepo.apply(db.conn(), &rec.call, t).await.unwrap();
        assert!(matches!(
            CallRepo.apply(db.conn(), &other.call, t2).await,
            Err(RepoError::Conflict)
        ));
        let stored = CallRepo.find(db.conn(), "c1").await.unwrap().unwrap();
        assert_eq!(stored.call.status, CallStatus::Confirmed);
        assert_eq!(stored.call.confirmed_at, Some(t0()));
        assert_eq!(stored, rec, "what is read back is what was written");

        // An entry's compare-and-set covers its live call too.
        let s2 = online_schedule(&db, "s2", "d2").await;
        let mut e = QueueEntry::join(EntryId::new("e1"), &s2, user("p2"), None, t0()).unwrap();
        QueueRepo.insert(db.conn(), &e).await.unwrap();
        let ready = e.set_ready(&user("p2"), true).unwrap().unwrap();
        QueueRepo
            .apply(db.conn(), &e.id, &ready, t0())
            .await
            .unwrap();
        let mut a = e.clone();
        let mut b = e.clone();
        let (_, invite_a) = start_queue_call(
            &s2,
            &Party::new(user("d2"), None),
            &mut a,
            Busy::default(),
            CallId::new("ca"),
            t0(),
            Duration::seconds(60),
        )
        .unwrap();
        let (_, invite_b) = start_queue_call(
            &s2,
            &Party::new(user("d2"), None),
            &mut b,
            Busy::default(),
            CallId::new("cb"),
            t0(),
            Duration::seconds(60),
        )
        .unwrap();
        QueueRepo
            .apply(db.conn(), &e.id, &invite_a, t0())
            .await
            .unwrap();
        assert!(matches!(
            QueueRepo.apply(db.conn(), &e.id, &invite_b, t0()).await,
            Err(RepoError::Conflict)
        ));
        // Toggling off from the pre-invitation snapshot loses too.
        let unready = e.set_ready(&user("p2"), false).unwrap().unwrap();
        assert!(matches!(
            QueueRepo.apply(db.conn(), &e.id, &unready, t0()).await,
            Err(RepoError::Conflict)
        ));
        let stored = QueueRepo.find(db.conn(), "e1").await.unwrap().unwrap();
        assert_eq!(stored.call_id, Some(CallId::new("ca")));
        assert_eq!(stored.status, EntryStatus::Ready);
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn live_rows_are_unique_per_host_guest_and_queue() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let conn = db.conn();
        let first = call("c1", "d1", "p1", t0());
        CallRepo.insert(conn, &first).await.unwrap();
        // Same host, other guest; same guest, other host: both refused.
        for (id, host, guest) in [("c2", "d1", "p2"), ("c3", "d2", "p1")] {
            assert!(
                matches!(
                    CallRepo.insert(conn, &call(id, host, guest, t0())).await,
                    Err(RepoError::Conflict)
                ),
                "{id}"
            );
        }
        assert!(CallRepo.find(conn, "c2").await.unwrap().is_none());
        // Once the first call is over, both may call again.
        let mut over = first.clone();
        let t = over
            .call
            .handle(&user("d1"), CallCommand::Cancel, t0())
            .unwrap()
            .unwrap();
        CallRepo.apply(conn, &over.call, t).await.unwrap();
        CallRepo
            .insert(conn, &call("c2", "d1", "p2", t0()))
            .await
            .unwrap();
        CallRepo
            .insert(conn, &call("c3", "d2", "p1", t0()))
            .await
            .unwrap();
        assert!(CallRepo.has_live(conn, Side::Host, "d1").await.unwrap());
        assert!(
            !CallRepo
                .has_live(conn, Side::Guest, "nobody")
                .await
                .unwrap()
        );

        // One live entry per guest and schedule; a DONE one does not count.
        let s = online_schedule(&db, "s1", "d1").await;
        let mut e1 = QueueEntry::join(EntryId::new("e1"), &s, user("p1"), None, t0()).unwrap();
        QueueRepo.insert(conn, &e1).await.unwrap();
        let twin = QueueEntry::join(EntryId::new("e2"), &s, user("p1"), None, t0()).unwrap();
        assert!(matches!(
            QueueRepo.insert(conn, &twin).await,
            Err(RepoError::Conflict)
        ));
        let close = e1.close().unwrap();
        QueueRepo.apply(conn, &e1.id, &close, t0()).await.unwrap();
        QueueRepo.insert(conn, &twin).await.unwrap();
        // …so the DONE one cannot be reset back while the new one is live.
        let reset = e1.reset(&s).unwrap().unwrap();
        assert!(matches!(
            QueueRepo.apply(conn, &e1.id, &reset, t0()).await,
            Err(RepoError::Conflict)
        ));
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn polls_and_deadlines_read_the_right_rows() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let conn = db.conn();
        // A direct-call shape: the guest invites the host.
        let mut direct = call("c1", "d1", "p1", t0());
        direct.call.inviter = Side::Guest;
        CallRepo.insert(conn, &direct).await.unwrap();
        CallRepo
            .insert(conn, &call("c2", "d2", "p2", t0() + Duration::seconds(1)))
            .await
            .unwrap();
        let pending = |u: &'static str, at: Timestamp| async move {
            CallRepo
                .pending_for_invitee(conn, u, at)
                .await
                .unwrap()
                .map(|r| r.call.id.to_string())
        };
        // The invitee sees it, the inviter does not; nobody after the deadline.
        assert_eq!(pending("d1", t0()).await.as_deref(), Some("c1"));
        assert_eq!(pending("p1", t0()).await, None);
        assert_eq!(pending("p2", t0()).await.as_deref(), Some("c2"));
        assert_eq!(pending("p2", t0() + Duration::seconds(61)).await, None);
        let deadlines = CallRepo.deadlines(conn).await.unwrap();
        assert_eq!(
            deadlines,
            vec![
                (CallId::new("c1"), t0() + Duration::seconds(60)),
                (CallId::new("c2"), t0() + Duration::seconds(61)),
            ]
        );
        let latest = CallRepo.latest_for_host(conn, "d2").await.unwrap().unwrap();
        assert_eq!(latest.call.id, CallId::new("c2"));
        tdb.cleanup().await;
    }
}
