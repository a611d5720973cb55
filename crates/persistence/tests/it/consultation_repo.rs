//! The storage half of the contract's "at most one" rules: compare-and-set
//! transitions and the live-row unique indexes, exercised directly (without
//! the service's row locks) on SQLite and, with `TEST_DATABASE_URL`, on
//! PostgreSQL.

use chrono::{Duration, TimeZone, Utc};
use consultd_domain::*;
use consultd_persistence::testing::TestDatabase;
use consultd_persistence::{
    CallRecord, CallRepo, Db, QueueRepo, RepoError, ScheduleRepo, SessionFilter,
};

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

/// A queue call (its schedule and entry rows are not needed here).
fn call(id: &str, host: &str, guest: &str, at: Timestamp) -> CallRecord {
    record(
        id,
        host,
        guest,
        at,
        Side::Host,
        CallOrigin::Queue {
            schedule_id: ScheduleId::new(format!("s-{id}")),
            entry_id: EntryId::new(format!("e-{id}")),
        },
    )
}

fn direct(id: &str, host: &str, guest: &str, appointment: &str) -> CallRecord {
    let appointment_id = AppointmentId::parse(appointment).unwrap();
    record(
        id,
        host,
        guest,
        t0(),
        Side::Guest,
        CallOrigin::Direct { appointment_id },
    )
}

fn tutoring(id: &str, host: &str, guest: &str, at: Timestamp) -> CallRecord {
    let skill_name = SkillName::parse("Piano").unwrap();
    let mut r = record(
        id,
        host,
        guest,
        at,
        Side::Guest,
        CallOrigin::Tutoring { skill_name },
    );
    r.room_id = format!("room-{id}");
    r
}

fn record(
    id: &str,
    host: &str,
    guest: &str,
    at: Timestamp,
    inviter: Side,
    origin: CallOrigin,
) -> CallRecord {
    let call = Call::invite(
        CallId::new(id),
        Party::new(user(host), Some("Dr".into())),
        Party::new(user(guest), None),
        inviter,
        at,
        Duration::seconds(60),
    )
    .unwrap();
    CallRecord {
        room_id: id.to_owned(),
        call,
        origin,
        call_type: "video".into(),
    }
}

/// Moves a stored call by its participant's command.
async fn act(db: &Db, r: &mut CallRecord, actor: &str, cmd: CallCommand) {
    let t = r.call.handle(&user(actor), cmd, t0()).unwrap().unwrap();
    CallRepo.apply(db.conn(), &r.call, t).await.unwrap();
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
        // A direct call: the guest invites the host.
        CallRepo
            .insert(conn, &direct("c1", "d1", "p1", "direct_session_1"))
            .await
            .unwrap();
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

#[tokio::test]
async fn every_kind_reads_back_as_written() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        for r in [
            call("c1", "d1", "p1", t0()),
            direct("c2", "d2", "p2", "123"),
            tutoring("c3", "d3", "p3", t0()),
        ] {
            CallRepo.insert(db.conn(), &r).await.unwrap();
            let back = CallRepo.find(db.conn(), r.call.id.as_str()).await.unwrap();
            assert_eq!(back.as_ref(), Some(&r));
            let by_room = CallRepo.find_by_room(db.conn(), &r.room_id).await.unwrap();
            assert_eq!(by_room.as_ref(), Some(&r), "a room names its call");
        }
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn one_live_direct_call_per_appointment_and_unique_rooms() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let conn = db.conn();
        let mut first = direct("c1", "d1", "p1", "appt-7");
        CallRepo.insert(conn, &first).await.unwrap();
        // Another doctor and patient, same appointment id: refused by the
        // database itself.
        assert!(matches!(
            CallRepo
                .insert(conn, &direct("c2", "d2", "p2", "appt-7"))
                .await,
            Err(RepoError::Conflict)
        ));
        let live = CallRepo.live_for_appointment(conn, "appt-7").await.unwrap();
        assert_eq!(live.map(|r| r.call.id), Some(CallId::new("c1")));
        assert!(
            CallRepo
                .live_for_appointment(conn, "appt-8")
                .await
                .unwrap()
                .is_none()
        );
        // Once it is over, the key is free again.
        act(&db, &mut first, "p1", CallCommand::Cancel).await;
        assert!(
            CallRepo
                .live_for_appointment(conn, "appt-7")
                .await
                .unwrap()
                .is_none()
        );
        CallRepo
            .insert(conn, &direct("c2", "d2", "p2", "appt-7"))
            .await
            .unwrap();
        // A room id names one call, ever.
        let mut clash = tutoring("c3", "d3", "p3", t0());
        clash.room_id = "c1".into();
        assert!(matches!(
            CallRepo.insert(conn, &clash).await,
            Err(RepoError::Conflict)
        ));
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn tutoring_requests_are_not_calls_for_busy_rules_and_polls() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let conn = db.conn();
        // A teacher with two incoming requests and a queue call at once.
        CallRepo
            .insert(conn, &tutoring("s1", "t1", "l1", t0()))
            .await
            .unwrap();
        CallRepo
            .insert(
                conn,
                &tutoring("s2", "t1", "l2", t0() + Duration::seconds(1)),
            )
            .await
            .unwrap();
        assert!(!CallRepo.has_live(conn, Side::Host, "t1").await.unwrap());
        assert!(!CallRepo.has_live(conn, Side::Guest, "l1").await.unwrap());
        assert!(
            CallRepo
                .pending_for_invitee(conn, "t1", t0())
                .await
                .unwrap()
                .is_none(),
            "a session request is not a call invitation"
        );
        assert!(
            CallRepo
                .latest_for_host(conn, "t1")
                .await
                .unwrap()
                .is_none()
        );
        CallRepo
            .insert(conn, &call("c1", "t1", "l1", t0()))
            .await
            .unwrap();
        assert!(CallRepo.has_live(conn, Side::Host, "t1").await.unwrap());
        // Both requests still expire by the one timer.
        let deadlines: Vec<_> = CallRepo
            .deadlines(conn)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id.to_string())
            .collect();
        assert_eq!(deadlines, ["s1", "c1", "s2"]);
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn session_lists_filter_by_side_status_and_expiry() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let conn = db.conn();
        let mut accepted = tutoring("s1", "t1", "l1", t0());
        CallRepo.insert(conn, &accepted).await.unwrap();
        act(&db, &mut accepted, "t1", CallCommand::Confirm).await;
        for (id, learner, at) in [("s2", "l2", 1), ("s3", "l3", 2)] {
            CallRepo
                .insert(
                    conn,
                    &tutoring(id, "t1", learner, t0() + Duration::seconds(at)),
                )
                .await
                .unwrap();
        }
        CallRepo
            .insert(conn, &tutoring("s4", "t2", "l1", t0()))
            .await
            .unwrap();
        CallRepo
            .insert(conn, &call("c1", "t1", "l9", t0()))
            .await
            .unwrap();
        let list = |side, statuses: &'static [CallStatus], unexpired_at, user: &'static str| {
            let f = SessionFilter {
                user_id: user,
                side,
                statuses,
                unexpired_at,
                limit: 50,
            };
            async move {
                CallRepo
                    .sessions(conn, f)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.call.id.to_string())
                    .collect::<Vec<_>>()
            }
        };
        let pending = TutoringStatus::Pending.call_statuses();
        // Newest first; only tutoring rows; only the user's side.
        assert_eq!(
            list(Some(Side::Host), &[], None, "t1").await,
            ["s3", "s2", "s1"]
        );
        assert_eq!(
            list(Some(Side::Host), pending, None, "t1").await,
            ["s3", "s2"]
        );
        // s2 expires at t0+61 s, s3 at t0+62 s.
        let at = t0() + Duration::milliseconds(61_500);
        assert_eq!(
            list(Some(Side::Host), pending, Some(at), "t1").await,
            ["s3"]
        );
        // Same creation instant: the id breaks the tie.
        assert_eq!(list(Some(Side::Guest), &[], None, "l1").await, ["s4", "s1"]);
        assert_eq!(
            list(Some(Side::Guest), &[], None, "t1").await,
            Vec::<String>::new()
        );
        assert_eq!(list(None, &[], None, "").await.len(), 4);
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn live_between_finds_a_pairs_calls_either_way_round_until_they_end() {
    for tdb in databases().await {
        let db = &Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let conn = db.conn();
        let mut queue = call("lb-q", "doc", "pat", t0());
        CallRepo.insert(conn, &queue).await.unwrap();
        let mut lesson = tutoring("lb-t", "teach", "pat", t0());
        CallRepo.insert(conn, &lesson).await.unwrap();
        CallRepo
            .insert(conn, &call("lb-other", "doc2", "pat2", t0()))
            .await
            .unwrap();
        let ids = |found: Vec<CallRecord>| {
            found
                .into_iter()
                .map(|r| r.call.id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(CallRepo.live_between(conn, "doc", "pat").await.unwrap()),
            ["lb-q"]
        );
        assert_eq!(
            ids(CallRepo.live_between(conn, "pat", "doc").await.unwrap()),
            ["lb-q"]
        );
        assert_eq!(
            ids(CallRepo.live_between(conn, "pat", "teach").await.unwrap()),
            ["lb-t"]
        );
        assert!(
            CallRepo
                .live_between(conn, "doc", "pat2")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            CallRepo
                .live_between(conn, "pat", "pat")
                .await
                .unwrap()
                .is_empty()
        );
        act(db, &mut queue, "pat", CallCommand::Decline).await;
        act(db, &mut lesson, "pat", CallCommand::Cancel).await;
        assert!(
            CallRepo
                .live_between(conn, "doc", "pat")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            CallRepo
                .live_between(conn, "teach", "pat")
                .await
                .unwrap()
                .is_empty()
        );
        tdb.cleanup().await;
    }
}

fn entry(id: &str, schedule: &str, patient: &str, status: EntryStatus) -> QueueEntry {
    QueueEntry {
        id: EntryId::new(id),
        schedule_id: ScheduleId::new(schedule),
        patient_id: user(patient),
        patient_name: None,
        status,
        call_id: None,
        joined_at: t0(),
    }
}

#[tokio::test]
async fn the_admin_board_reads_the_oldest_live_rows_with_their_totals_and_queue_lengths() {
    for tdb in databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let conn = db.conn();
        // Written newest first: the page comes back oldest first.
        for i in (1..=4).rev() {
            let at = t0() + Duration::seconds(i);
            let c = call(&format!("c{i}"), &format!("d{i}"), &format!("p{i}"), at);
            CallRepo.insert(conn, &c).await.unwrap();
        }
        let mut over = CallRepo.find(conn, "c4").await.unwrap().unwrap();
        act(&db, &mut over, "d4", CallCommand::Cancel).await;
        CallRepo
            .insert(conn, &tutoring("t1", "d9", "l1", t0()))
            .await
            .unwrap();
        let (calls, total) = CallRepo.live_page(conn, false, 2).await.unwrap();
        let ids: Vec<_> = calls.iter().map(|r| r.call.id.as_str()).collect();
        assert_eq!(
            (ids, total),
            (vec!["c1", "c2"], 3),
            "c4 is over; t1 is no call"
        );
        let (sessions, total) = CallRepo.live_page(conn, true, 10).await.unwrap();
        assert_eq!((sessions.len(), total), (1, 1));
        assert_eq!(sessions[0].call.id.as_str(), "t1");

        // Queue lengths by schedule and status, DONE left out.
        online_schedule(&db, "s1", "d1").await;
        let upcoming = Schedule::create(
            ScheduleId::new("s2"),
            user("d2"),
            Slot::parse("2026-11-22", "09:00", "17:00").unwrap(),
            t0(),
        );
        ScheduleRepo.insert(conn, &upcoming).await.unwrap();
        let quiet = Schedule::create(
            ScheduleId::new("s3"),
            user("d3"),
            Slot::parse("2026-11-23", "09:00", "17:00").unwrap(),
            t0(),
        );
        ScheduleRepo.insert(conn, &quiet).await.unwrap();
        for e in [
            entry("e1", "s1", "p1", EntryStatus::Waiting),
            entry("e2", "s1", "p2", EntryStatus::Waiting),
            entry("e3", "s1", "p3", EntryStatus::Ready),
            entry("e4", "s1", "p4", EntryStatus::Done),
            entry("e5", "s2", "p1", EntryStatus::Waiting),
        ] {
            QueueRepo.insert(conn, &e).await.unwrap();
        }
        let mut lengths: Vec<_> = QueueRepo
            .lengths(conn)
            .await
            .unwrap()
            .into_iter()
            .map(|(s, status, n)| (s.to_string(), status, n))
            .collect();
        lengths.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
        assert_eq!(
            lengths,
            vec![
                ("s1".to_owned(), EntryStatus::Ready, 1),
                ("s1".to_owned(), EntryStatus::Waiting, 2),
                ("s2".to_owned(), EntryStatus::Waiting, 1),
            ]
        );
        // Online (s1) or named for its queue (s2); s3 is neither.
        let shown: Vec<_> = ScheduleRepo
            .online_or(conn, &["s2"], 10)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id.to_string())
            .collect();
        assert_eq!(shown, ["s1", "s2"]);
        tdb.cleanup().await;
    }
}
