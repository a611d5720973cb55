//! CONTRACT §7 end to end (the support chat app): chat sessions, messages, presence and
//! the session timer, with real sockets and real HTTP, on SQLite and (with
//! `TEST_DATABASE_URL`) PostgreSQL.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

struct Shop {
    app: TestApp,
    customer: String,
    mechanic: String,
    other_mechanic: String,
    stranger: String,
}

impl Shop {
    async fn open_with(tweak: impl FnOnce(&mut consultd_server::config::Config)) -> Self {
        let app = TestApp::spawn_with(tweak).await;
        Self {
            customer: app.token("c1", "customer"),
            mechanic: app.token("m1", "mechanic"),
            other_mechanic: app.token("m2", "mechanic"),
            stranger: app.token("c2", "customer"),
            app,
        }
    }

    async fn open() -> Self {
        Self::open_with(|_| {}).await
    }

    /// The customer's intake; returns the row.
    async fn intake(&self, body: Value) -> Value {
        let (status, res) = self
            .app
            .post("/api/chat-sessions", &self.customer, body)
            .await;
        assert_eq!(status, 201, "{res}");
        res["data"].clone()
    }

    async fn act(&self, id: &str, action: &str, token: &str) -> (u16, Value) {
        self.app
            .post(
                &format!("/api/chat-sessions/{id}/{action}"),
                token,
                json!({}),
            )
            .await
    }

    async fn accept(&self, id: &str) -> Value {
        let (status, res) = self.act(id, "accept", &self.mechanic).await;
        assert_eq!(status, 200, "{res}");
        res["data"].clone()
    }

    async fn history(&self, id: &str, query: &str, token: &str) -> (u16, Value) {
        self.app
            .get(&format!("/api/chat/{id}/messages{query}"), token)
            .await
    }

    /// A session both have joined (it is live), with their sockets.
    async fn live(&self, body: Value) -> (String, SioClient, SioClient) {
        let id = id_of(&self.intake(body).await);
        self.accept(&id).await;
        let mut c = self.app.connect(&self.customer).await;
        let mut m = self.app.connect(&self.mechanic).await;
        // Both connected after the accept: the connect resync says `waiting`.
        assert_eq!(
            c.expect_event("session:status").await[0]["status"],
            "waiting"
        );
        assert_eq!(
            m.expect_event("session:status").await[0]["status"],
            "waiting"
        );
        assert_eq!(join(&mut c, &id).await["ok"], true);
        assert_eq!(join(&mut m, &id).await["ok"], true);
        let status = c.expect_event("session:status").await.remove(0);
        assert_eq!(status["status"], "live");
        c.drain(QUIET).await;
        m.drain(QUIET).await;
        (id, c, m)
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

async fn join(c: &mut SioClient, room: &str) -> Value {
    c.emit_ack("chat:join_room", json!({ "roomId": room }))
        .await
}

async fn send(c: &mut SioClient, room: &str, content: &str, cmid: Option<&str>) -> Value {
    let mut body = json!({ "roomId": room, "content": content });
    if let Some(cmid) = cmid {
        body["clientMessageId"] = json!(cmid);
    }
    c.emit_ack("chat:send_message", body).await
}

/// the support chat app's test 1 and 2: the customer is in the room first; the
/// mechanic accepts (first wins) and joins; the server sees both users and
/// starts the session and its timer.
#[tokio::test]
async fn the_customer_first_flow_of_seed_004() {
    let shop = Shop::open().await;
    let row = shop.intake(json!({ "concern": "  Brakes squeal " })).await;
    let id = id_of(&row);
    assert_eq!(row["status"], "pending");
    assert_eq!(row["customer_user_id"], "c1");
    assert_eq!(row["mechanic_id"], Value::Null);
    assert_eq!(row["concern"], "Brakes squeal");
    assert_eq!(row["room_id"], json!(id));
    assert_eq!(row["started_at"], Value::Null);

    // Test 1: the customer joins a pending session and is alone.
    let mut customer = shop.app.connect(&shop.customer).await;
    let ack = join(&mut customer, &id).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["roomId"], json!(id));
    assert_eq!(ack["messages"], json!([]));
    assert_eq!(ack["session"]["status"], "pending");
    let sync = customer.expect_event("presence:sync").await.remove(0);
    assert_eq!(sync["roomId"], json!(id));
    let users = sync["users"].as_object().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users["c1"]["role"], "customer");
    assert_eq!(users["c1"]["connections"], 1);

    // Before accepting, no host may join; the customer may not accept.
    let mut m1 = shop.app.connect(&shop.mechanic).await;
    assert_eq!(code(&join(&mut m1, &id).await), "forbidden");
    let (status, res) = shop.act(&id, "accept", &shop.customer).await;
    assert_eq!(
        (status, res["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Test 2: m1 accepts first; m2 is too late.
    let taken = shop.accept(&id).await;
    assert_eq!(taken["status"], "waiting");
    assert_eq!(taken["mechanic_id"], "m1");
    let status = customer.expect_event("session:status").await.remove(0);
    assert_eq!(status["id"], json!(id));
    assert_eq!(status["status"], "waiting");
    assert_eq!(status["mechanic_id"], "m1");
    assert_eq!(status["started_at"], Value::Null);
    let (status, res) = shop.act(&id, "accept", &shop.other_mechanic).await;
    assert_eq!(
        (status, res["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    // The winner tapping twice is answered with the session, not an error.
    let (status, again) = shop.act(&id, "accept", &shop.mechanic).await;
    assert_eq!(
        (status, again["data"]["status"].as_str()),
        (200, Some("waiting"))
    );

    // The losing mechanic and strangers cannot enter; admins join no room.
    let mut m2 = shop.app.connect(&shop.other_mechanic).await;
    assert_eq!(code(&join(&mut m2, &id).await), "forbidden");
    let mut stranger = shop.app.connect(&shop.stranger).await;
    assert_eq!(code(&join(&mut stranger, &id).await), "forbidden");
    let mut admin = shop.app.connect(&shop.app.token("root", "admin")).await;
    assert_eq!(code(&join(&mut admin, &id).await), "forbidden");
    assert_eq!(
        code(&join(&mut stranger, "no-such-room").await),
        "forbidden"
    );
    customer.drain(QUIET).await;
    m1.drain(QUIET).await;

    // m1 joins: the customer sees them arrive; the session goes live.
    let ack = join(&mut m1, &id).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let arrived = customer.expect_event("presence:join").await.remove(0);
    assert_eq!(
        arrived,
        json!({ "roomId": id, "userId": "m1", "role": "mechanic" })
    );
    let live_c = customer.expect_event("session:status").await.remove(0);
    let live_m = m1.expect_event("session:status").await.remove(0);
    assert_eq!(live_c, live_m);
    assert_eq!(live_c["status"], "live");
    let started = millis(&live_c["started_at"]);
    assert_eq!(millis(&live_c["ends_at"]) - started, 30 * 60 * 1000);
    let (_, row) = shop
        .app
        .get(&format!("/api/chat-sessions/{id}"), &shop.customer)
        .await;
    assert_eq!(row["data"]["status"], "live");
    assert_eq!(row["data"]["started_at"], live_c["started_at"]);

    // Strangers heard nothing of it.
    m2.expect_no_event("session:status", QUIET).await;
    stranger
        .expect_no_event("presence:sync", Duration::ZERO)
        .await;
    assert_eq!(
        shop.app.audit_actions(&id).await,
        ["chat.create", "chat.accept", "chat.start"]
    );
    shop.stop().await;
}

#[tokio::test]
async fn the_mechanic_may_arrive_first_and_leaving_keeps_it_live() {
    let shop = Shop::open().await;
    let id = id_of(&shop.intake(json!({})).await);
    shop.accept(&id).await;
    let mut m = shop.app.connect(&shop.mechanic).await;
    assert_eq!(
        m.expect_event("session:status").await[0]["status"],
        "waiting"
    );
    join(&mut m, &id).await;
    // Alone: no start.
    m.expect_no_event("session:status", QUIET).await;
    let mut c = shop.app.connect(&shop.customer).await;
    assert_eq!(
        c.expect_event("session:status").await[0]["status"],
        "waiting"
    );
    join(&mut c, &id).await;
    assert_eq!(m.expect_event("session:status").await[0]["status"], "live");
    assert_eq!(c.expect_event("session:status").await[0]["status"], "live");
    // One leaves: still live, and nothing more is announced.
    let ack = c.emit_ack("chat:leave_room", json!({ "roomId": id })).await;
    assert_eq!(ack["ok"], true);
    let left = m.expect_event("presence:leave").await.remove(0);
    assert_eq!(left, json!({ "roomId": id, "userId": "c1" }));
    m.expect_no_event("session:status", QUIET).await;
    // Back in: still the same session, no second start.
    join(&mut c, &id).await;
    m.expect_no_event("session:status", QUIET).await;
    assert_eq!(
        shop.app.audit_actions(&id).await,
        ["chat.create", "chat.accept", "chat.start"]
    );
    shop.stop().await;
}

#[tokio::test]
async fn two_hosts_accepting_at_once_exactly_one_wins() {
    let shop = Shop::open().await;
    for _ in 0..5 {
        let id = id_of(&shop.intake(json!({})).await);
        let tokens: Vec<String> = (0..6)
            .map(|i| shop.app.token(&format!("racer{i}"), "mechanic"))
            .collect();
        let tasks: Vec<_> = tokens
            .iter()
            .map(|t| {
                let (http, url) = (
                    shop.app.http.clone(),
                    shop.app.url(&format!("/api/chat-sessions/{id}/accept")),
                );
                let t = t.clone();
                tokio::spawn(async move {
                    let res = http.post(url).bearer_auth(t).send().await.unwrap();
                    let status = res.status().as_u16();
                    let body: Value = res.json().await.unwrap();
                    (status, body)
                })
            })
            .collect();
        let mut winners = vec![];
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                200 => winners.push(body["data"]["mechanic_id"].clone()),
                409 => assert_eq!(body["error"]["code"], "conflict"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one accept wins");
        let (_, row) = shop
            .app
            .get(&format!("/api/chat-sessions/{id}"), &shop.customer)
            .await;
        assert_eq!(row["data"]["mechanic_id"], winners[0]);
        let actions = shop.app.audit_actions(&id).await;
        assert_eq!(actions, ["chat.create", "chat.accept"]);
    }
    shop.stop().await;
}

#[tokio::test]
async fn messages_are_stored_then_broadcast_to_the_room_including_the_sender() {
    let shop = Shop::open().await;
    let (id, mut c, mut m) = shop.live(json!({})).await;
    let mut c_tab2 = shop.app.connect(&shop.customer).await;
    join(&mut c_tab2, &id).await;
    c.drain(QUIET).await;
    m.drain(QUIET).await;

    let ack = send(&mut c, &id, "Hi, my brakes squeal 🚗", Some("cm-1")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let message = ack["message"].clone();
    assert_eq!(message["roomId"], json!(id));
    assert_eq!(message["senderId"], "c1");
    assert_eq!(message["senderRole"], "customer");
    assert_eq!(message["content"], "Hi, my brakes squeal 🚗");
    assert_eq!(message["clientMessageId"], "cm-1");
    assert!(message["createdAt"].as_str().unwrap().ends_with('Z'));
    for client in [&mut c, &mut c_tab2, &mut m] {
        let got = client.expect_event("chat:new_message").await.remove(0);
        assert_eq!(got, message);
    }

    // The ack was lost; the client resends: same message, nothing new.
    let again = send(&mut c, &id, "Hi, my brakes squeal 🚗", Some("cm-1")).await;
    assert_eq!(again["message"], message);
    assert_eq!(again["duplicate"], true);
    // Even from the other tab, at the same time as another resend.
    let a = c.emit_ack_later(
        "chat:send_message",
        json!({ "roomId": id, "content": "x", "clientMessageId": "cm-1" }),
    );
    let b = c_tab2.emit_ack_later(
        "chat:send_message",
        json!({ "roomId": id, "content": "x", "clientMessageId": "cm-1" }),
    );
    assert_eq!(a.await.unwrap()["message"], message);
    assert_eq!(b.await.unwrap()["message"], message);
    m.expect_no_event("chat:new_message", QUIET).await;

    // The same client id from another sender is another message; a
    // message without one is always new.
    let theirs = send(&mut m, &id, "Which wheel?", Some("cm-1")).await;
    assert_ne!(theirs["message"]["id"], message["id"]);
    assert_eq!(theirs["message"]["senderRole"], "mechanic");
    let plain = send(&mut m, &id, "Front?", None).await;
    assert_eq!(plain["message"]["clientMessageId"], Value::Null);
    // Two tabs sending at once: both stored, each once.
    let x = c.emit_ack_later(
        "chat:send_message",
        json!({ "roomId": id, "content": "tab 1" }),
    );
    let y = c_tab2.emit_ack_later(
        "chat:send_message",
        json!({ "roomId": id, "content": "tab 2" }),
    );
    assert_eq!(x.await.unwrap()["ok"], true);
    assert_eq!(y.await.unwrap()["ok"], true);

    let (status, history) = shop.history(&id, "", &shop.mechanic).await;
    assert_eq!(status, 200, "{history}");
    let contents: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents.len(), 5, "{contents:?}");
    assert_eq!(
        &contents[..3],
        ["Hi, my brakes squeal 🚗", "Which wheel?", "Front?"]
    );
    // The admin reads it too; strangers and the losing mechanic learn nothing.
    let admin = shop.app.token("root", "admin");
    assert_eq!(shop.history(&id, "", &admin).await.0, 200);
    assert_eq!(shop.history(&id, "", &shop.stranger).await.0, 404);
    assert_eq!(shop.history(&id, "", &shop.other_mechanic).await.0, 404);
    assert_eq!(shop.history("nope", "", &shop.customer).await.0, 404);
    shop.stop().await;
}

/// The ack really is lost: the client sends and its connection drops before
/// the answers; what the server read before the drop is still stored and
/// delivered, in order. The client reconnects, joins again and resends the
/// last one: nothing new is stored.
#[tokio::test]
async fn a_resend_after_a_dropped_ack_stores_one_message() {
    let shop = Shop::open().await;
    let (id, c, mut m) = shop.live(json!({})).await;
    for i in 0..20 {
        c.emit(
            "chat:send_message",
            json!({ "roomId": id, "content": format!("line {i}"), "clientMessageId": format!("d{i}") }),
        );
    }
    c.disconnect();
    let mut got = vec![];
    for _ in 0..20 {
        got.push(m.expect_event("chat:new_message").await.remove(0));
    }
    let contents: Vec<&str> = got.iter().map(|g| g["content"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    assert_eq!(contents, want);
    let mut c = shop.app.connect(&shop.customer).await;
    join(&mut c, &id).await;
    let ack = send(&mut c, &id, "line 19", Some("d19")).await;
    assert_eq!(ack["message"], got[19]);
    assert_eq!(ack["duplicate"], true);
    m.expect_no_event("chat:new_message", QUIET).await;
    let (_, history) = shop.history(&id, "", &shop.mechanic).await;
    assert_eq!(history["data"], json!(got));
    shop.stop().await;
}

/// One socket's messages arrive in the order it sent them, without waiting
/// for acks, even though each is stored before it is broadcast.
#[tokio::test]
async fn one_senders_messages_keep_their_order() {
    let shop = Shop::open().await;
    let (id, c, mut m) = shop.live(json!({})).await;
    for i in 0..60 {
        c.emit(
            "chat:send_message",
            json!({ "roomId": id, "content": format!("m{i}"), "clientMessageId": format!("k{i}") }),
        );
    }
    let mut got = vec![];
    while got.len() < 60 {
        let ev = m.expect_event("chat:new_message").await.remove(0);
        got.push(ev["content"].as_str().unwrap().to_owned());
    }
    let want: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    shop.stop().await;
}

#[tokio::test]
async fn bad_chat_input_gets_a_clear_code_and_changes_nothing() {
    let shop = Shop::open_with(|c| c.max_chat_chars = 10_000).await;
    let (id, mut c, mut m) = shop.live(json!({})).await;
    let cases = [
        (json!({ "roomId": id }), "bad_request"),
        (json!({ "roomId": id, "content": 5 }), "bad_request"),
        (json!({ "roomId": id, "content": null }), "bad_request"),
        (json!({ "roomId": id, "content": " \n " }), "bad_request"),
        (
            json!({ "roomId": id, "content": "x".repeat(10_001) }),
            "too_large",
        ),
        (
            json!({ "roomId": id, "content": "ok", "clientMessageId": {} }),
            "bad_request",
        ),
        (
            json!({ "roomId": id, "content": "ok", "clientMessageId": "" }),
            "bad_request",
        ),
        (
            json!({ "roomId": id, "content": "ok", "clientMessageId": "x".repeat(201) }),
            "bad_request",
        ),
        (json!({ "content": "ok" }), "bad_request"),
        (json!({ "roomId": ["x"], "content": "ok" }), "bad_request"),
        (json!("just a string"), "bad_request"),
        (
            json!({ "roomId": "other-room", "content": "ok" }),
            "forbidden",
        ),
    ];
    for (payload, want) in cases {
        let ack = c.emit_ack("chat:send_message", payload.clone()).await;
        assert_eq!(code(&ack), want, "{payload}");
        assert_eq!(ack["ok"], false);
    }
    m.expect_no_event("chat:new_message", QUIET).await;
    // 10,000 characters (multi-byte ones included) is allowed.
    let long = "é".repeat(10_000);
    assert_eq!(send(&mut c, &id, &long, None).await["ok"], true);
    let (_, history) = shop.history(&id, "", &shop.customer).await;
    assert_eq!(
        history["data"].as_array().unwrap().len(),
        1,
        "only the valid one"
    );

    // Without joining: forbidden (a participant's other socket too).
    let mut c2 = shop.app.connect(&shop.customer).await;
    assert_eq!(code(&send(&mut c2, &id, "hi", None).await), "forbidden");
    let ack = c2
        .emit_ack("chat:typing", json!({ "roomId": id, "isTyping": true }))
        .await;
    assert_eq!(code(&ack), "forbidden");
    // Typing and read need the right types; read needs a message of the room.
    for bad in [
        json!({ "roomId": id }),
        json!({ "roomId": id, "isTyping": "yes" }),
    ] {
        assert_eq!(code(&c.emit_ack("chat:typing", bad).await), "bad_request");
    }
    let ack = c
        .emit_ack("chat:read", json!({ "roomId": id, "messageId": "nope" }))
        .await;
    assert_eq!(code(&ack), "not_found");
    let ack = c
        .emit_ack("chat:read", json!({ "roomId": id, "messageId": [1] }))
        .await;
    assert_eq!(code(&ack), "bad_request");
    // Without an ack, a failure is an `error` event with the same object.
    c.emit("chat:send_message", json!({ "roomId": id, "content": 1 }));
    let err = c.expect_event("error").await.remove(0);
    assert_eq!(code(&err), "bad_request");
    shop.stop().await;
}

#[tokio::test]
async fn rest_input_is_checked_and_roles_are_enforced() {
    let shop = Shop::open().await;
    let app = &shop.app;
    // Only customers (guests) open sessions.
    let (status, _) = app
        .post("/api/chat-sessions", &shop.mechanic, json!({}))
        .await;
    assert_eq!(status, 403);
    let admin = app.token("root", "admin");
    assert_eq!(
        app.post("/api/chat-sessions", &admin, json!({})).await.0,
        403
    );
    for body in [
        json!({ "concern": 5 }),
        json!({ "duration_minutes": "30" }),
        json!({ "duration_minutes": 0 }),
        json!({ "duration_minutes": -5 }),
        json!({ "duration_minutes": 100000 }),
        json!({ "concern": "x".repeat(2001) }),
    ] {
        let (status, res) = app
            .post("/api/chat-sessions", &shop.customer, body.clone())
            .await;
        assert_eq!(
            (status, res["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{body}"
        );
    }
    let (status, _) = app
        .post_raw("/api/chat-sessions", &shop.customer, "{nope")
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .post("/api/chat-sessions", "not-a-token", json!({}))
        .await;
    assert_eq!(status, 401);
    // Nothing was stored by the refusals.
    let (_, mine) = app.get("/api/chat-sessions", &shop.customer).await;
    assert_eq!(mine["data"], json!([]));

    // An empty body is an intake with the defaults.
    let (status, row) = app.post_raw("/api/chat-sessions", &shop.customer, "").await;
    assert_eq!(status, 201);
    assert_eq!(row["data"]["duration_minutes"], 30.0);
    let id = id_of(&row["data"]);
    let short = shop
        .intake(json!({ "durationMinutes": 1.5, "concern": null }))
        .await;
    assert_eq!(short["duration_minutes"], 1.5);

    // Lists: hosts see open requests; customers their own; strangers nothing.
    let (_, open) = app
        .get("/api/chat-sessions?status=pending", &shop.mechanic)
        .await;
    assert_eq!(open["data"].as_array().unwrap().len(), 2);
    let (_, other) = app.get("/api/chat-sessions", &shop.stranger).await;
    assert_eq!(other["data"], json!([]));
    assert_eq!(
        app.get("/api/chat-sessions?status=nope", &shop.customer)
            .await
            .0,
        400
    );
    // A pending request is visible to any host, not to other customers.
    assert_eq!(
        app.get(&format!("/api/chat-sessions/{id}"), &shop.other_mechanic)
            .await
            .0,
        200
    );
    assert_eq!(
        app.get(&format!("/api/chat-sessions/{id}"), &shop.stranger)
            .await
            .0,
        404
    );
    // Unknown sessions; ending someone else's; a host ending an open request.
    assert_eq!(shop.act("nope", "accept", &shop.mechanic).await.0, 404);
    assert_eq!(shop.act("nope", "end", &shop.customer).await.0, 404);
    assert_eq!(shop.act(&id, "end", &shop.stranger).await.0, 404);
    assert_eq!(shop.act(&id, "end", &shop.mechanic).await.0, 403);
    // Once taken, it is gone from other hosts' view.
    shop.accept(&id).await;
    assert_eq!(
        app.get(&format!("/api/chat-sessions/{id}"), &shop.other_mechanic)
            .await
            .0,
        404
    );
    assert_eq!(shop.act(&id, "end", &shop.other_mechanic).await.0, 404);
    shop.stop().await;
}

#[tokio::test]
async fn typing_and_read_markers_reach_only_the_others() {
    let shop = Shop::open().await;
    let (id, mut c, mut m) = shop.live(json!({})).await;
    let ack = c
        .emit_ack("chat:typing", json!({ "roomId": id, "isTyping": true }))
        .await;
    assert_eq!(ack["ok"], true);
    let typing = m.expect_event("chat:typing").await.remove(0);
    assert_eq!(
        typing,
        json!({ "roomId": id, "userId": "c1", "isTyping": true })
    );
    c.expect_no_event("chat:typing", QUIET).await;

    let first = send(&mut c, &id, "one", None).await["message"].clone();
    let second = send(&mut c, &id, "two", None).await["message"].clone();
    m.drain(QUIET).await;
    let ack = m
        .emit_ack(
            "chat:read",
            json!({ "roomId": id, "messageId": second["id"] }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let read = c.expect_event("chat:read").await.remove(0);
    assert_eq!(
        read,
        json!({ "roomId": id, "userId": "m1", "messageId": second["id"] })
    );
    // Reading an older one does not move the marker back.
    m.emit_ack(
        "chat:read",
        json!({ "roomId": id, "messageId": first["id"] }),
    )
    .await;
    c.expect_no_event("chat:read", QUIET).await;
    // The marker is stored: a later join shows it.
    let mut c2 = shop.app.connect(&shop.customer).await;
    let ack = join(&mut c2, &id).await;
    assert_eq!(ack["readMarkers"], json!({ "m1": second["id"] }));
    assert_eq!(ack["messages"].as_array().unwrap().len(), 2);

    // Two tabs marking at once, each one step apart: the marker never
    // goes back, so it ends on the newest.
    let mut ids = vec![];
    for i in 0..8 {
        ids.push(send(&mut c, &id, &format!("x{i}"), None).await["message"]["id"].clone());
    }
    let mut m2 = shop.app.connect(&shop.mechanic).await;
    join(&mut m2, &id).await;
    for pair in ids.windows(2) {
        let newer = m.emit_ack_later("chat:read", json!({ "roomId": id, "messageId": pair[1] }));
        let older = m2.emit_ack_later("chat:read", json!({ "roomId": id, "messageId": pair[0] }));
        assert_eq!(newer.await.unwrap()["ok"], true);
        assert_eq!(older.await.unwrap()["ok"], true);
        let ack = join(&mut c2, &id).await;
        assert_eq!(ack["readMarkers"]["m1"], pair[1]);
    }
    shop.stop().await;
}

#[tokio::test]
async fn two_tabs_of_one_user_are_one_presence() {
    let shop = Shop::open().await;
    let (id, mut c, mut m) = shop.live(json!({})).await;
    // Joining again on the same socket changes nothing for anyone.
    for _ in 0..3 {
        let ack = join(&mut c, &id).await;
        assert_eq!(ack["ok"], true);
    }
    m.expect_silence(QUIET).await;
    let mut c2 = shop.app.connect(&shop.customer).await;
    join(&mut c2, &id).await;
    let sync = m.expect_event("presence:sync").await.remove(0);
    assert_eq!(sync["users"]["c1"]["connections"], 2);
    assert_eq!(sync["users"]["m1"]["connections"], 1);
    assert_eq!(sync["users"].as_object().unwrap().len(), 2);
    m.expect_no_event("presence:join", QUIET).await;

    // One tab leaves: still present.
    c.emit_ack("chat:leave_room", json!({ "roomId": id })).await;
    let sync = m.expect_event("presence:sync").await.remove(0);
    assert_eq!(sync["users"]["c1"]["connections"], 1);
    m.expect_no_event("presence:leave", QUIET).await;
    // The last one goes (a disconnect counts): now they left.
    c2.disconnect();
    let left = m.expect_event("presence:leave").await.remove(0);
    assert_eq!(left, json!({ "roomId": id, "userId": "c1" }));
    let sync = m.expect_event("presence:sync").await.remove(0);
    assert_eq!(sync["users"].as_object().unwrap().len(), 1);
    // Leaving a room one is not in is fine.
    let ack = c.emit_ack("chat:leave_room", json!({ "roomId": id })).await;
    assert_eq!(ack["ok"], true);
    shop.stop().await;
}

#[tokio::test]
async fn history_pages_backwards_oldest_first_within_a_page() {
    let shop = Shop::open().await;
    let (id, mut c, _m) = shop.live(json!({})).await;
    for i in 0..75 {
        let ack = send(&mut c, &id, &format!("m{i:02}"), None).await;
        assert_eq!(ack["ok"], true);
    }
    let contents = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };
    let range =
        |a: usize, b: usize| -> Vec<String> { (a..b).map(|i| format!("m{i:02}")).collect() };

    let (status, latest) = shop.history(&id, "", &shop.customer).await;
    assert_eq!(status, 200);
    assert_eq!(contents(&latest), range(25, 75));
    let cursor = latest["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, older) = shop
        .history(&id, &format!("?before={cursor}"), &shop.customer)
        .await;
    assert_eq!(contents(&older), range(0, 25));
    let (_, ten) = shop
        .history(&id, &format!("?before={cursor}&limit=10"), &shop.mechanic)
        .await;
    assert_eq!(contents(&ten), range(15, 25));
    let (_, capped) = shop.history(&id, "?limit=1000", &shop.customer).await;
    assert_eq!(contents(&capped), range(0, 75));
    // The join ack carries the same latest 50.
    let mut c2 = shop.app.connect(&shop.customer).await;
    let ack = join(&mut c2, &id).await;
    assert_eq!(ack["messages"], latest["data"]);
    for bad in [
        "?limit=0",
        "?limit=abc",
        "?limit=-1",
        "?before=not-a-message",
    ] {
        let (status, res) = shop.history(&id, bad, &shop.customer).await;
        assert_eq!(
            (status, res["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    shop.stop().await;
}

#[tokio::test]
async fn ending_refuses_new_messages_and_tells_both() {
    let shop = Shop::open().await;
    let (id, mut c, mut m) = shop.live(json!({})).await;
    let kept = send(&mut c, &id, "before the end", Some("late-ack")).await["message"].clone();
    m.drain(QUIET).await;
    let (status, row) = shop.act(&id, "end", &shop.mechanic).await;
    assert_eq!(
        (status, row["data"]["status"].as_str()),
        (200, Some("ended"))
    );
    for client in [&mut c, &mut m] {
        let ended = client.expect_event("session:status").await.remove(0);
        assert_eq!(ended["status"], "ended");
        assert_eq!(ended["ended_at"], row["data"]["ended_at"]);
    }
    let ack = send(&mut c, &id, "after", None).await;
    assert_eq!(code(&ack), "conflict");
    // A resend of what was stored before the end still gets its message.
    let ack = send(&mut c, &id, "before the end", Some("late-ack")).await;
    assert_eq!(ack["message"], kept);
    let ack = c
        .emit_ack("chat:typing", json!({ "roomId": id, "isTyping": true }))
        .await;
    assert_eq!(code(&ack), "conflict");
    // Ending again is answered with the ended session; accepting is too late.
    let (status, again) = shop.act(&id, "end", &shop.customer).await;
    assert_eq!(
        (status, again["data"]["status"].as_str()),
        (200, Some("ended"))
    );
    assert_eq!(shop.act(&id, "accept", &shop.other_mechanic).await.0, 409);
    // History stays readable, also by joining again.
    let mut c2 = shop.app.connect(&shop.customer).await;
    let ack = join(&mut c2, &id).await;
    assert_eq!(ack["messages"].as_array().unwrap().len(), 1);
    assert_eq!(ack["session"]["status"], "ended");
    assert_eq!(
        shop.app.audit_actions(&id).await,
        ["chat.create", "chat.accept", "chat.start", "chat.end"]
    );
    // The customer may also withdraw a request nobody took.
    let pending = id_of(&shop.intake(json!({})).await);
    let (status, row) = shop.act(&pending, "end", &shop.customer).await;
    assert_eq!(
        (status, row["data"]["status"].as_str()),
        (200, Some("ended"))
    );
    shop.stop().await;
}

/// A join racing the end: whichever wins, the room knows the session is
/// over afterwards (typing is refused), even when the end committed while
/// the join was between reading the session and entering the room.
#[tokio::test]
async fn a_join_racing_the_end_never_misses_it() {
    let shop = Shop::open().await;
    for round in 0..15 {
        let id = id_of(&shop.intake(json!({})).await);
        shop.accept(&id).await;
        let mut c = shop.app.connect(&shop.customer).await;
        let joined = c.emit_ack_later("chat:join_room", json!({ "roomId": id }));
        let (status, _) = shop.act(&id, "end", &shop.mechanic).await;
        assert_eq!(status, 200);
        assert_eq!(joined.await.unwrap()["ok"], true, "round {round}");
        let ack = c
            .emit_ack("chat:typing", json!({ "roomId": id, "isTyping": true }))
            .await;
        assert_eq!(code(&ack), "conflict", "round {round}");
        let ack = send(&mut c, &id, "late", None).await;
        assert_eq!(code(&ack), "conflict", "round {round}");
    }
    shop.stop().await;
}

/// The timer ends a live session at `ends_at`, once, and tells both. On
/// real time, end to end: the one chat test that waits for its deadline.
#[tokio::test]
async fn the_timer_ends_a_live_session_on_time() {
    let shop = Shop::open().await;
    // 0.025 minutes = 1.5 s.
    let (id, mut c, mut m) = shop.live(json!({ "duration_minutes": 0.025 })).await;
    let (_, row) = shop
        .app
        .get(&format!("/api/chat-sessions/{id}"), &shop.customer)
        .await;
    let ends_at = millis(&row["data"]["ends_at"]);
    assert_eq!(ends_at - millis(&row["data"]["started_at"]), 1500);
    let ended = c.expect_event("session:status").await.remove(0);
    let arrived = chrono::Utc::now().timestamp_millis();
    assert_eq!(ended["status"], "ended");
    assert_eq!(millis(&ended["ended_at"]), ends_at);
    assert!(arrived >= ends_at, "not early");
    assert!(
        arrived - ends_at < 1500,
        "on time: {} ms late",
        arrived - ends_at
    );
    assert_eq!(m.expect_event("session:status").await[0]["status"], "ended");
    c.expect_no_event("session:status", Duration::from_millis(500))
        .await;
    assert_eq!(
        shop.app.audit_actions(&id).await,
        ["chat.create", "chat.accept", "chat.start", "chat.expire"]
    );
    shop.stop().await;
}

/// A restart while live: the reconnecting client is told the status, and
/// the session still ends on time, once. Down past the deadline: it ends
/// as soon as the server is back.
#[tokio::test]
async fn a_restart_during_live_still_ends_on_time_once() {
    let mut shop = Shop::open().await;
    let (id, c, m) = shop.live(json!({ "duration_minutes": 30 })).await;
    let (_, row) = shop
        .app
        .get(&format!("/api/chat-sessions/{id}"), &shop.customer)
        .await;
    let ends_at = millis(&row["data"]["ends_at"]);
    drop((c, m));
    shop.app.restart().await;

    // The reconnect's resync says where the session is.
    let mut c = shop.app.connect(&shop.customer).await;
    let status = c.expect_event("session:status").await.remove(0);
    assert_eq!(status["status"], "live");
    assert_eq!(millis(&status["ends_at"]), ends_at);
    c.expect_no_event("session:status", QUIET).await;
    // The mechanic too: the restart's index holds both sides.
    let mut mechanic = shop.app.connect(&shop.mechanic).await;
    let status = mechanic.expect_event("session:status").await.remove(0);
    assert_eq!(
        (&status["id"], &status["status"]),
        (&json!(id), &json!("live"))
    );
    drop(mechanic);
    shop.app.advance(Duration::from_secs(30 * 60));
    let ended = c.expect_event("session:status").await.remove(0);
    assert_eq!(ended["status"], "ended");
    let arrived = consultd_server::clock::Clock::now(&shop.app.clock).timestamp_millis();
    assert!(
        arrived >= ends_at && arrived - ends_at < 1500,
        "{} ms",
        arrived - ends_at
    );
    c.expect_no_event("session:status", Duration::from_millis(500))
        .await;

    // Down across the deadline.
    let (id2, c2, m2) = shop.live(json!({ "duration_minutes": 30 })).await;
    drop((c2, m2));
    shop.app.halt().await;
    shop.app.advance(Duration::from_secs(31 * 60));
    shop.app.start_again().await;
    let mut m = shop.app.connect(&shop.mechanic).await;
    // Either it ended before this socket connected (nothing to resync: the
    // session is over) or the socket hears it end; the row says which.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, row) = shop
            .app
            .get(&format!("/api/chat-sessions/{id2}"), &shop.mechanic)
            .await;
        if row["data"]["status"] == "ended" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    m.expect_no_event("chat:new_message", Duration::ZERO).await;
    for chat in [&id, &id2] {
        let actions = shop.app.audit_actions(chat).await;
        assert_eq!(
            actions.iter().filter(|a| *a == "chat.expire").count(),
            1,
            "{actions:?}"
        );
    }
    shop.stop().await;
}

/// A reconnecting customer learns of an accept that happened while away.
#[tokio::test]
async fn reconnect_resyncs_a_waiting_session() {
    let shop = Shop::open().await;
    let id = id_of(&shop.intake(json!({})).await);
    shop.accept(&id).await;
    let mut c = shop.app.connect(&shop.customer).await;
    let status = c.expect_event("session:status").await.remove(0);
    assert_eq!(status["id"], json!(id));
    assert_eq!(status["status"], "waiting");
    assert_eq!(status["mechanic_id"], "m1");
    // Once: no second copy from a live push.
    c.expect_no_event("session:status", QUIET).await;
    // Pending requests and other people's sessions are not re-sent.
    let mut stranger = shop.app.connect(&shop.stranger).await;
    stranger.expect_no_event("session:status", QUIET).await;
    shop.stop().await;
}
