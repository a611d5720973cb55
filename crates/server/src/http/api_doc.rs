//! The OpenAPI 3.1 document of the REST API (`GET /openapi.json`), built by
//! utoipa from the handlers' `#[utoipa::path]` attributes and the view
//! types' `ToSchema` derives, and the Swagger UI at `/docs`, whose assets
//! are compiled into the binary (`utoipa-swagger-ui`, vendored): no CDN.

use std::sync::OnceLock;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".to_owned());
        bearer.description = Some(
            "A JWT from the app's own backend (HS256 with JWT_SECRET, or RS256/ES256/EdDSA \
             with JWT_PUBLIC_KEY): `sub` is the user id, the role claim maps to host, guest \
             or admin (CONTRACT §1)."
                .to_owned(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// A direct call's `CallView` also carries `DirectCallFields` (flattened,
/// CONTRACT §5): listed here as optional properties of `CallView`, since
/// an optional flatten cannot be said in a derive.
struct DirectCallFieldsInCallView;

impl Modify for DirectCallFieldsInCallView {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let Some(components) = api.components.as_mut() else {
            return;
        };
        let extra = match components.schemas.get("DirectCallFields") {
            Some(RefOr::T(Schema::Object(o))) => o.properties.clone(),
            _ => return,
        };
        if let Some(RefOr::T(Schema::Object(call))) = components.schemas.get_mut("CallView") {
            for (name, schema) in extra {
                call.properties.entry(name).or_insert(schema);
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "consultd",
        description = "REST API of consultd, the signaling and session server for consultation \
                       apps (CONTRACT.md). Socket.IO events are in /asyncapi.json; lifecycle \
                       webhooks in docs/webhooks.md.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::me::me,
        super::consult::create_schedule,
        super::consult::my_schedules,
        super::consult::schedule,
        super::consult::start_schedule,
        super::consult::end_schedule,
        super::consult::join_queue,
        super::consult::queue,
        super::consult::start_call,
        super::consult::entry,
        super::consult::toggle_ready,
        super::consult::reset_entry,
        super::consult::host_status,
        super::consult::start_direct_call,
        super::consult::call,
        super::consult::confirm,
        super::consult::decline,
        super::consult::cancel,
        super::consult::activate,
        super::consult::end_call,
        super::consult::set_peer_id,
        super::consult::pending_invitation,
        super::consult::audit_logs,
        super::consult::create_session,
        super::consult::sessions,
        super::consult::session,
        super::consult::accept_session,
        super::consult::reject_session,
        super::consult::cancel_session,
        super::consult::end_session,
        super::chat::create,
        super::chat::list,
        super::chat::one,
        super::chat::accept,
        super::chat::end,
        super::chat::history,
        super::media::ice_servers,
        super::media::peerjs_ticket,
        crate::peerjs::info,
        crate::peerjs::fresh_id,
        crate::peerjs::peers,
        crate::peerjs::upgrade,
    ),
    components(schemas(
        crate::service::views::QueueUpdated,
        crate::service::views::DoctorPresence,
        crate::service::views::PeerIdUpdated,
        crate::service::views::ChatStatusView,
        crate::service::views::ChatMessageView,
        crate::service::views::CallView,
        crate::service::views::SessionView,
        crate::service::views::DirectCallFields,
        crate::service::views::ChatSessionView,
        crate::socket::admin::AdminSnapshot,
    )),
    modifiers(&BearerAuth, &DirectCallFieldsInCallView),
    tags(
        (name = "queue consultation", description = "Schedules, the waiting queue and its calls (CONTRACT §4)"),
        (name = "direct call", description = "A patient's direct call to a doctor (CONTRACT §5)"),
        (name = "tutoring request", description = "Tutoring sessions (CONTRACT §6)"),
        (name = "support chat", description = "Chat sessions and their history (CONTRACT §7)"),
        (name = "media path", description = "ICE servers and PeerJS tickets (CONTRACT §9)"),
        (name = "operations", description = "Health, identity and the audit log (CONTRACT §8)"),
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// `GET /asyncapi.json`.
pub(super) async fn asyncapi_json() -> axum::Json<&'static serde_json::Value> {
    axum::Json(asyncapi())
}

/// A client event: its name, payload schema and ack schema.
struct ClientEvent {
    name: &'static str,
    summary: &'static str,
    payload: serde_json::Value,
    ack: serde_json::Value,
}

/// A server push: its name, payload schema and summary.
struct ServerEvent {
    name: &'static str,
    summary: &'static str,
    payload: serde_json::Value,
}

fn schema_ref(name: &str) -> serde_json::Value {
    serde_json::json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn object(required: &[&str], props: serde_json::Value, open: bool) -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": open,
    })
}

/// `{ ok: true, …fields }`, or the refusal.
fn ack(fields: serde_json::Value, required: &[&str]) -> serde_json::Value {
    use serde_json::json;
    let mut props = json!({ "ok": { "const": true } });
    if let (Some(p), Some(f)) = (props.as_object_mut(), fields.as_object()) {
        p.extend(f.clone());
    }
    let mut req = vec!["ok"];
    req.extend_from_slice(required);
    json!({ "oneOf": [object(&req, props, false), schema_ref("SocketError")] })
}

fn client_events() -> Vec<ClientEvent> {
    use serde_json::json;
    let room = || json!({ "type": "string", "minLength": 1 });
    let room_only = || object(&["roomId"], json!({ "roomId": room() }), true);
    let peers = json!({ "roomId": { "type": "string" }, "peers": { "type": "array", "items": schema_ref("RoomPeer") } });
    let relay = || {
        object(
            &["roomId"],
            json!({ "roomId": room(), "to": { "type": "string", "description": "one user id: only to them" } }),
            true,
        )
    };
    let plain = || ack(json!({}), &[]);
    let join_ack = || ack(peers.clone(), &["roomId", "peers"]);
    let room_ack = || ack(json!({ "roomId": { "type": "string" } }), &["roomId"]);
    let mut all = vec![
        ClientEvent {
            name: "identify_as_doctor",
            summary: "A host says it is online (payload ignored)",
            payload: json!({}),
            ack: plain(),
        },
        ClientEvent {
            name: "webrtc:join_room",
            summary: "Join a call's signaling room; late joiners get the kept offer/answer and candidates after the ack",
            payload: room_only(),
            ack: join_ack(),
        },
        ClientEvent {
            name: "webrtc:leave_room",
            summary: "Leave the room",
            payload: room_only(),
            ack: room_ack(),
        },
        ClientEvent {
            name: "join_consultation_room",
            summary: "The legacy join: by roomId, appointmentId or consultationId",
            payload: json!({ "type": "object", "properties": { "roomId": room(), "appointmentId": room(), "consultationId": room() }, "minProperties": 1 }),
            ack: join_ack(),
        },
        ClientEvent {
            name: "chat:join_room",
            summary: "Join a chat room; the ack carries the latest 50 messages, the session and each participant's read marker",
            payload: room_only(),
            ack: ack(
                json!({
                    "roomId": { "type": "string" },
                    "messages": { "type": "array", "items": schema_ref("ChatMessageView") },
                    "session": schema_ref("ChatSessionView"),
                    "readMarkers": { "type": "object", "additionalProperties": { "type": "string" }, "description": "user id → the last message id they read" },
                }),
                &["roomId", "messages", "session", "readMarkers"],
            ),
        },
        ClientEvent {
            name: "chat:send_message",
            summary: "Post a message; a resend with the same clientMessageId returns the stored one",
            payload: object(
                &["roomId", "content"],
                json!({ "roomId": room(), "content": { "type": "string" }, "clientMessageId": { "type": ["string", "null"] } }),
                true,
            ),
            ack: ack(
                json!({ "message": schema_ref("ChatMessageView"), "duplicate": { "const": true, "description": "present on a resend: the stored message, broadcast no more" } }),
                &["message"],
            ),
        },
        ClientEvent {
            name: "chat:typing",
            summary: "Tell the others you are typing",
            payload: object(
                &["roomId", "isTyping"],
                json!({ "roomId": room(), "isTyping": { "type": "boolean" } }),
                true,
            ),
            ack: plain(),
        },
        ClientEvent {
            name: "chat:read",
            summary: "Store a read marker and tell the others",
            payload: object(
                &["roomId", "messageId"],
                json!({ "roomId": room(), "messageId": { "type": "string" } }),
                true,
            ),
            ack: ack(
                json!({ "roomId": { "type": "string" }, "messageId": { "type": "string" } }),
                &["roomId", "messageId"],
            ),
        },
        ClientEvent {
            name: "chat:leave_room",
            summary: "Leave a chat room",
            payload: room_only(),
            ack: room_ack(),
        },
        ClientEvent {
            name: "admin:subscribe",
            summary: "Admins only (others get `forbidden`): watch the live board; the ack carries a snapshot, then `admin:snapshot` follows every 2 s (payload ignored)",
            payload: json!({}),
            ack: ack(
                json!({ "snapshot": schema_ref("AdminSnapshot") }),
                &["snapshot"],
            ),
        },
        ClientEvent {
            name: "admin:unsubscribe",
            summary: "Stop the `admin:snapshot` pushes (payload ignored)",
            payload: json!({}),
            ack: plain(),
        },
    ];
    for name in [
        "webrtc:offer",
        "webrtc:answer",
        "webrtc:ice_candidate",
        "webrtc_offer",
        "webrtc_answer",
        "webrtc_ice_candidate",
    ] {
        all.push(ClientEvent {
            name,
            summary: "Relayed verbatim to the other participant(s), with `from` and `fromSocketId` added",
            payload: relay(),
            ack: plain(),
        });
    }
    all
}

fn server_events() -> Vec<ServerEvent> {
    use serde_json::json;
    let call = |name, summary| ServerEvent {
        name,
        summary,
        payload: schema_ref("CallView"),
    };
    let session = |name, summary| ServerEvent {
        name,
        summary,
        payload: schema_ref("SessionView"),
    };
    let relayed = object(
        &["from", "fromSocketId"],
        json!({ "roomId": { "type": "string" }, "from": { "type": "string" }, "fromSocketId": { "type": "string" } }),
        true,
    );
    let who = object(
        &["roomId", "userId", "role"],
        json!({ "roomId": { "type": "string" }, "userId": { "type": "string" }, "role": { "type": "string" } }),
        false,
    );
    let gone = object(
        &["roomId", "userId"],
        json!({ "roomId": { "type": "string" }, "userId": { "type": "string" } }),
        false,
    );
    let mut all = vec![
        ServerEvent {
            name: crate::socket::admin::SNAPSHOT_EVENT,
            summary: "To admins who subscribed: what is live now, and this node's counters (ids, statuses and times only; never SDP, candidates or chat text)",
            payload: schema_ref("AdminSnapshot"),
        },
        call(
            "call_invitation",
            "An invitation for you (also re-sent on connect while it is live)",
        ),
        call("call_confirmed", "The call was accepted"),
        call("call_activated", "The call is ACTIVE"),
        call("call_ended", "The call ended"),
        call("call_declined", "The invitation was declined"),
        call("call_cancelled", "The invitation was withdrawn"),
        call("call_expired", "The invitation expired unanswered"),
        ServerEvent {
            name: "peer_id_updated",
            summary: "A participant published its PeerJS id",
            payload: schema_ref("PeerIdUpdated"),
        },
        ServerEvent {
            name: "queue_updated",
            summary: "The host's whole queue after a change",
            payload: schema_ref("QueueUpdated"),
        },
        ServerEvent {
            name: "doctor_online",
            summary: "A host's schedule went online",
            payload: schema_ref("DoctorPresence"),
        },
        ServerEvent {
            name: "doctor_offline",
            summary: "A host's schedule ended",
            payload: schema_ref("DoctorPresence"),
        },
        session("session:incoming", "A tutoring request for the teacher"),
        session("session:accepted", "The teacher accepted (to the learner)"),
        session(
            "session:updated",
            "Any change of a tutoring session (to both)",
        ),
        ServerEvent {
            name: "session:status",
            summary: "A chat session's change (to the room and both users)",
            payload: schema_ref("ChatStatusView"),
        },
        ServerEvent {
            name: "chat:new_message",
            summary: "A message in a chat room you joined",
            payload: schema_ref("ChatMessageView"),
        },
        ServerEvent {
            name: "chat:typing",
            summary: "Someone else is typing",
            payload: object(
                &["roomId", "userId", "isTyping"],
                json!({ "roomId": { "type": "string" }, "userId": { "type": "string" }, "isTyping": { "type": "boolean" } }),
                false,
            ),
        },
        ServerEvent {
            name: "chat:read",
            summary: "Someone else read up to a message",
            payload: object(
                &["roomId", "userId", "messageId"],
                json!({ "roomId": { "type": "string" }, "userId": { "type": "string" }, "messageId": { "type": "string" } }),
                false,
            ),
        },
        ServerEvent {
            name: "webrtc:peer_joined",
            summary: "A user's first socket joined the room",
            payload: who.clone(),
        },
        ServerEvent {
            name: "webrtc:peer_left",
            summary: "A user's last socket left the room",
            payload: gone.clone(),
        },
        ServerEvent {
            name: "presence:join",
            summary: "A user's first connection arrived",
            payload: who,
        },
        ServerEvent {
            name: "presence:leave",
            summary: "A user's last connection went",
            payload: gone,
        },
        ServerEvent {
            name: "presence:sync",
            summary: "The whole room's presence, on every change",
            payload: object(
                &["roomId", "users"],
                json!({
                    "roomId": { "type": "string" },
                    "users": { "type": "object", "additionalProperties": object(&["role", "onlineAt", "connections"], json!({ "role": { "type": "string" }, "onlineAt": { "type": "string", "format": "date-time" }, "connections": { "type": "integer", "minimum": 1 } }), false) },
                }),
                false,
            ),
        },
        ServerEvent {
            name: "error",
            summary: "A failing event that had no ack",
            payload: schema_ref("SocketError"),
        },
    ];
    for name in [
        "webrtc:offer",
        "webrtc:answer",
        "webrtc:ice_candidate",
        "webrtc_offer",
        "webrtc_answer",
        "webrtc_ice_candidate",
    ] {
        all.push(ServerEvent {
            name,
            summary: "A relayed signaling message (legacy names to legacy joiners)",
            payload: relayed.clone(),
        });
    }
    all
}

/// A component key for an event name (`:` is not allowed there).
fn key(direction: &str, name: &str) -> String {
    format!("{direction}.{}", name.replace(':', "."))
}

/// The client events (names only), for tests that check coverage.
pub fn documented_client_events() -> Vec<&'static str> {
    client_events().iter().map(|e| e.name).collect()
}

/// The server pushes (names only), for tests that check coverage.
pub fn documented_server_events() -> Vec<&'static str> {
    server_events().iter().map(|e| e.name).collect()
}

/// The AsyncAPI 3.0 document of the Socket.IO root namespace, built once.
/// Its schemas are the OpenAPI document's (the same Rust types).
pub fn asyncapi() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(build_asyncapi)
}

fn build_asyncapi() -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let openapi = serde_json::to_value(openapi()).unwrap_or(Value::Null);
    let mut schemas = openapi["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    schemas.insert(
        "SocketError".into(),
        json!({
            "type": "object",
            "required": ["ok", "error"],
            "properties": {
                "ok": { "const": false },
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" } },
                },
            },
        }),
    );
    schemas.insert(
        "RoomPeer".into(),
        json!({ "type": "object", "required": ["userId", "role"], "properties": { "userId": { "type": "string" }, "role": { "type": "string" } } }),
    );
    let (mut messages, mut channel_messages, mut operations) = (Map::new(), Map::new(), Map::new());
    let mut add = |direction: &str, name: &str, summary: &str, payload: Value| {
        let k = key(direction, name);
        messages.insert(
            k.clone(),
            json!({ "name": name, "title": name, "summary": summary, "payload": payload }),
        );
        channel_messages.insert(
            k.clone(),
            json!({ "$ref": format!("#/components/messages/{k}") }),
        );
        k
    };
    for e in client_events() {
        let k = add("client", e.name, e.summary, e.payload);
        let ack_key = add("ack", e.name, "The acknowledgement", e.ack);
        operations.insert(
            k.clone(),
            json!({
                "action": "receive",
                "summary": e.summary,
                "channel": { "$ref": "#/channels/root" },
                "messages": [{ "$ref": format!("#/channels/root/messages/{k}") }],
                "reply": {
                    "channel": { "$ref": "#/channels/root" },
                    "messages": [{ "$ref": format!("#/channels/root/messages/{ack_key}") }],
                },
            }),
        );
    }
    for e in server_events() {
        let k = add("server", e.name, e.summary, e.payload);
        operations.insert(
            k.clone(),
            json!({
                "action": "send",
                "summary": e.summary,
                "channel": { "$ref": "#/channels/root" },
                "messages": [{ "$ref": format!("#/channels/root/messages/{k}") }],
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "consultd Socket.IO events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The root namespace of consultd's Socket.IO server (CONTRACT.md §1–§7). \
                Connect with `auth: { token }` (4.x) or `?token=` (2.x). Operations with action \
                `receive` are client events, acknowledged as their reply says; `send` ones are \
                server pushes. A message's `name` is the Socket.IO event name.",
            "license": { "name": "Apache-2.0" },
        },
        "defaultContentType": "application/json",
        "channels": {
            "root": {
                "address": "/",
                "title": "The root namespace",
                "messages": channel_messages,
            },
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route or an event missing from a document fails here.
    #[test]
    fn every_route_and_client_event_is_documented() {
        let doc = serde_json::to_value(openapi()).unwrap();
        for &(method, path) in super::super::ROUTES {
            if matches!(path, "/openapi.json" | "/asyncapi.json") {
                continue;
            }
            let op = &doc["paths"][path][method.to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} is not in /openapi.json");
        }
        // The PeerJS routes, at the default PEERJS_PATH.
        for path in [
            "/peerjs",
            "/peerjs/peerjs",
            "/peerjs/{key}/id",
            "/peerjs/{key}/peers",
        ] {
            assert!(
                doc["paths"][path]["get"].is_object(),
                "GET {path} is not in /openapi.json"
            );
        }
        let documented = documented_client_events();
        for name in crate::socket::EVENTS {
            assert!(documented.contains(name), "{name} is not in /asyncapi.json");
        }
        assert_eq!(
            documented.len(),
            crate::socket::EVENTS.len(),
            "{documented:?}"
        );
    }

    #[test]
    fn the_asyncapi_document_refers_only_to_what_it_defines() {
        let doc = asyncapi();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| *c != '"').collect();
            assert!(
                schemas.contains_key(&name),
                "{name} is referenced, not defined"
            );
        }
        assert_eq!(doc["asyncapi"], "3.0.0");
        for op in doc["operations"].as_object().unwrap().values() {
            assert!(
                matches!(op["action"].as_str(), Some("send" | "receive")),
                "{op}"
            );
        }
    }
}
