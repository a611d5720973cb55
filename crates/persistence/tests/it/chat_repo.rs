//! Chat repository tests, on SQLite and (with `TEST_DATABASE_URL`)
//! PostgreSQL: the compare-and-set that makes the first accept win,
//! idempotent inserts, paging across equal timestamps, read markers.

use chrono::{Duration, TimeZone, Utc};
use consultd_domain::{
    ChatDuration, ChatId, ChatSession, ChatStatus, Principal, RoleMap, Timestamp, Transition,
    UserId,
};
use consultd_persistence::testing::TestDatabase;
use consultd_persistence::{ChatMessage, ChatRepo, ChatScope, Db, RepoError};

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

fn host(id: &str) -> Principal {
    let (role, class) = RoleMap::default().resolve("mechanic").unwrap();
    Principal {
        user_id: user(id),
        role,
        class,
        name: None,
    }
}

async fn ready() -> Vec<(TestDatabase, Db)> {
    let mut all = vec![];
    for tdb in TestDatabase::each_backend().await.unwrap() {
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        all.push((tdb, db));
    }
    all
}

fn message(room: &str, id: &str, at: Timestamp, cmid: Option<&str>) -> ChatMessage {
    ChatMessage {
        id: id.into(),
        room_id: room.into(),
        sender_id: "c1".into(),
        sender_role: "customer".into(),
        content: format!("content of {id}"),
        client_message_id: cmid.map(str::to_owned),
        created_at: at,
    }
}

#[tokio::test]
async fn sessions_round_trip_and_only_the_first_accept_is_stored() {
    for (tdb, db) in ready().await {
        let duration = ChatDuration::from_minutes(30.0).unwrap();
        let s = ChatSession::open(ChatId::new("s1"), user("c1"), None, duration, t0());
        ChatRepo.insert(db.conn(), &s).await.unwrap();
        assert_eq!(
            ChatRepo.find(db.conn(), "s1").await.unwrap(),
            Some(s.clone())
        );

        // Two hosts each read `pending` and accept: the second write loses.
        let (mut a, mut b) = (s.clone(), s.clone());
        let ta = a.accept(&host("m1"), t0()).unwrap().unwrap();
        let tb = b.accept(&host("m2"), t0()).unwrap().unwrap();
        ChatRepo.apply(db.conn(), &a, ta).await.unwrap();
        let lost = ChatRepo.apply(db.conn(), &b, tb).await;
        assert!(matches!(lost, Err(RepoError::Conflict)), "{lost:?}");
        let stored = ChatRepo.find(db.conn(), "s1").await.unwrap().unwrap();
        assert_eq!(stored.mechanic, Some(user("m1")));
        assert_eq!(stored.status, ChatStatus::Waiting);

        // Live: its end is a deadline the timer reloads.
        let mut live = stored.clone();
        let t = live.on_presence([&user("c1"), &user("m1")], t0()).unwrap();
        ChatRepo.apply(db.conn(), &live, t).await.unwrap();
        let deadlines = ChatRepo.deadlines(db.conn()).await.unwrap();
        assert_eq!(
            deadlines,
            vec![("s1".to_owned(), t0() + Duration::minutes(30))]
        );
        assert_eq!(ChatRepo.find(db.conn(), "s1").await.unwrap().unwrap(), live);
        // A stale move from `waiting` changes nothing.
        let stale = ChatRepo
            .apply(
                db.conn(),
                &stored,
                Transition::new(ChatStatus::Waiting, ChatStatus::Ended),
            )
            .await;
        assert!(matches!(stale, Err(RepoError::Conflict)));

        let host_view = ChatRepo
            .list(db.conn(), ChatScope::Host("m1"), None, 10)
            .await
            .unwrap();
        assert_eq!(host_view.len(), 1);
        let other_host = ChatRepo
            .list(db.conn(), ChatScope::Host("m2"), None, 10)
            .await
            .unwrap();
        assert!(
            other_host.is_empty(),
            "taken sessions are not open requests"
        );
        let resync = ChatRepo
            .in_progress_for(db.conn(), "m1", true)
            .await
            .unwrap();
        assert_eq!(resync.len(), 1);
        assert!(
            ChatRepo
                .in_progress_for(db.conn(), "m1", false)
                .await
                .unwrap()
                .is_empty()
        );
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn messages_are_idempotent_by_client_id_and_page_by_time_then_id() {
    for (tdb, db) in ready().await {
        let duration = ChatDuration::from_minutes(30.0).unwrap();
        let s = ChatSession::open(ChatId::new("room"), user("c1"), None, duration, t0());
        ChatRepo.insert(db.conn(), &s).await.unwrap();
        let repo = ChatRepo;
        // Five in one millisecond, two later; written out of order.
        let same = t0() + Duration::milliseconds(5);
        for id in ["m3", "m1", "m5", "m2", "m4"] {
            assert!(
                repo.insert_message(db.conn(), &message("room", id, same, None))
                    .await
                    .unwrap()
            );
        }
        for (id, ms) in [("m7", 9), ("m6", 7)] {
            let at = t0() + Duration::milliseconds(ms);
            assert!(
                repo.insert_message(db.conn(), &message("room", id, at, None))
                    .await
                    .unwrap()
            );
        }
        let ids = |page: Vec<ChatMessage>| page.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(
            ids(repo.page(db.conn(), "room", None, 3).await.unwrap()),
            ["m5", "m6", "m7"]
        );
        let cursor = repo
            .message(db.conn(), "room", "m4")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ids(repo
                .page(db.conn(), "room", Some(&cursor), 10)
                .await
                .unwrap()),
            ["m1", "m2", "m3"]
        );
        assert!(
            repo.message(db.conn(), "other", "m4")
                .await
                .unwrap()
                .is_none()
        );

        // A client id is unique per room and sender.
        let first = message("room", "k1", same, Some("cm"));
        assert!(repo.insert_message(db.conn(), &first).await.unwrap());
        let resend = message("room", "k2", same, Some("cm"));
        assert!(!repo.insert_message(db.conn(), &resend).await.unwrap());
        let stored = repo
            .by_client_id(db.conn(), "room", "c1", "cm")
            .await
            .unwrap();
        assert_eq!(stored.map(|m| m.id), Some("k1".to_owned()));
        let mut other_sender = message("room", "k3", same, Some("cm"));
        other_sender.sender_id = "m1".into();
        assert!(repo.insert_message(db.conn(), &other_sender).await.unwrap());

        // Read markers: one per user and room, moved by upsert.
        repo.set_read_marker(db.conn(), "room", "m1", "m2", same)
            .await
            .unwrap();
        repo.set_read_marker(db.conn(), "room", "m1", "m7", same)
            .await
            .unwrap();
        assert_eq!(
            repo.read_marker(db.conn(), "room", "m1")
                .await
                .unwrap()
                .as_deref(),
            Some("m7")
        );
        assert_eq!(
            repo.read_markers(db.conn(), "room").await.unwrap(),
            vec![("m1".to_owned(), "m7".to_owned())]
        );
        tdb.cleanup().await;
    }
}
