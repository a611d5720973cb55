//! Just enough Engine.IO v4 / Socket.IO v5 over a websocket to load a
//! server: the handshake, CONNECT with `auth.token`, pings, events and acks.
//! No socket.io client library, so the generator costs little per message.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An open Socket.IO connection on the root namespace.
pub struct Conn {
    pub ws: Ws,
    next_ack: u64,
}

/// `http://host:port` → the websocket URL of the Engine.IO endpoint.
pub fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let rest = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{rest}/socket.io/?EIO=4&transport=websocket")
}

impl Conn {
    /// Opens the websocket, reads OPEN, sends CONNECT with the token and
    /// waits for the server's CONNECT answer.
    pub async fn connect(url: &str, token: &str) -> Result<Self, String> {
        // Nagle off, as browsers do for websockets: small frames go now.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(|e| format!("websocket: {e}"))?;
        let mut conn = Self { ws, next_ack: 0 };
        let open = conn.next_text().await?;
        if !open.starts_with('0') {
            return Err(format!("expected OPEN, got {open}"));
        }
        conn.send(format!("40{{\"token\":\"{token}\"}}")).await?;
        let answer = conn.next_text().await?;
        if !answer.starts_with("40") {
            return Err(format!("connect refused: {answer}"));
        }
        Ok(conn)
    }

    pub async fn send(&mut self, frame: String) -> Result<(), String> {
        self.ws
            .send(Message::text(frame))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// The next text frame that is not a ping (pings are answered).
    pub async fn next_text(&mut self) -> Result<String, String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    self.send("3".to_owned()).await?;
                }
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Emits `[event, payload]` with an ack and waits for the answer;
    /// events that arrive meanwhile are skipped.
    pub async fn request(&mut self, event: &str, payload: &str) -> Result<String, String> {
        self.request_raw(&format!("\"{event}\",{payload}")).await
    }

    /// The same with the packet's arguments as given (`"name",payload`),
    /// for names and payloads that must go out exactly as written.
    pub async fn request_raw(&mut self, args: &str) -> Result<String, String> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(format!("42{id}[{args}]")).await?;
        let prefix = format!("43{id}[");
        loop {
            let t = self.next_text().await?;
            if let Some(rest) = t.strip_prefix(&prefix) {
                return Ok(rest.strip_suffix(']').unwrap_or(rest).to_owned());
            }
        }
    }

    /// Waits for an event whose frame starts with `42["<event>"`.
    pub async fn expect(&mut self, event: &str) -> Result<String, String> {
        let prefix = format!("42[\"{event}\"");
        loop {
            let t = self.next_text().await?;
            if t.starts_with(&prefix) {
                return Ok(t);
            }
        }
    }

    /// Keeps the connection alive (answers pings) until it closes.
    pub async fn idle(mut self) {
        while self.next_text().await.is_ok() {}
    }
}
