//! consultd's load generator. Runs against a running server and measures:
//! - `connect`: N authenticated idle sockets — connect rate, the server's
//!   CPU per connect (`/proc/<pid>/stat`) and resident memory per socket
//!   (`/proc/<pid>/status`), again after all reconnect at once, and the
//!   memory left once all have closed;
//! - `relay`: pairs in call rooms, the doctor relaying `webrtc:ice_candidate`
//!   to the patient — delivered messages per second and latency, at
//!   saturation (a bounded window per pair) or at a fixed total rate;
//! - `setup`: calls set up at a fixed rate — the REST call that creates
//!   it, connect both, join both, offer and answer — and the time that takes;
//! - `chat`: customer/mechanic pairs in live chat sessions, the customer
//!   sending `chat:send_message` (each one stored before it is broadcast) —
//!   messages delivered to the mechanic per second and latency.
//!
//! It prints a table and one JSON line. Calls are created through the REST
//! API first (`POST /api/call-sessions/start`), so the rooms are real live
//! calls and every join is authorised as in production.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use consultd_loadgen::eio::{Conn, ws_url};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:4000", global = true)]
    url: String,
    /// A second node of the same cluster: the relay's receivers connect to
    /// it, so that every relayed message crosses from one node to the other.
    #[arg(long, global = true)]
    url_b: Option<String>,
    /// The server's HS256 secret, to mint tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    secret: String,
    /// The server's process id, to read its resident memory.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Prefix of the user ids this run makes (keep runs on one database apart).
    #[arg(long, global = true)]
    run_id: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// Idle authenticated sockets: connect rate, server CPU per connect and
    /// memory per socket; then all of them reconnect at once, then all
    /// close (and `--cycles` more connect-and-close rounds).
    Connect {
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
        /// Connects in flight at once (a new one starts as one finishes).
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        /// Seconds to wait before reading the server's memory with the
        /// sockets open.
        #[arg(long, default_value_t = 5)]
        settle: u64,
        /// Seconds to wait after closing them all (longer than the
        /// allocator's decay time, 10 s for jemalloc).
        #[arg(long, default_value_t = 12)]
        drain: u64,
        /// Extra rounds of connecting every socket and closing them all.
        #[arg(long, default_value_t = 0)]
        cycles: usize,
    },
    /// Relay throughput and latency of `webrtc:ice_candidate`.
    Relay {
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// Total messages per second; 0 = saturation.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Messages in flight per pair at saturation.
        #[arg(long, default_value_t = 64)]
        window: u64,
    },
    /// Call setup: connect + join both + offer/answer round trip.
    Setup {
        #[arg(long, default_value_t = 1000)]
        pairs: usize,
        /// Setups started per second.
        #[arg(long, default_value_t = 100)]
        rate: u64,
    },
    /// Chat messages: stored, then broadcast (`chat:new_message`).
    Chat {
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        /// Total messages per second; 0 = saturation.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Messages in flight per pair at saturation.
        #[arg(long, default_value_t = 8)]
        window: u64,
    },
    /// Everything docs/benchmarks.md's table reports, with the targets' parameters.
    All,
}

/// What a throughput scenario sends and how its receiver recognises it.
#[derive(Clone, Copy)]
struct Flow {
    /// The frame prefix the receiver counts.
    received: &'static str,
    /// Just before the send time (µs) in a received frame.
    marker: &'static str,
    /// Just before the sender's sequence number in a received frame.
    seq_marker: &'static str,
    /// The frame for room, send time and sequence number.
    frame: fn(&str, u64, u64) -> String,
}

const RELAY: Flow = Flow {
    received: "42[\"webrtc:ice_candidate\"",
    marker: ",\"t\":",
    seq_marker: ",\"s\":",
    frame: candidate,
};

const CHAT: Flow = Flow {
    received: "42[\"chat:new_message\"",
    marker: "\"content\":\"t",
    seq_marker: "\"clientMessageId\":\"k",
    frame: chat_message,
};

struct Ctx {
    url: String,
    ws: String,
    /// Where the relay's receivers connect (the second node, or the first).
    ws_b: String,
    secret: String,
    pid: Option<u32>,
    run: String,
    http: reqwest::Client,
    epoch: Instant,
}

impl Ctx {
    fn token(&self, sub: &str, role: &str) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 3600;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({ "sub": sub, "role": role, "exp": exp, "name": sub }),
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .unwrap_or_default()
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The server's user + system CPU time so far, in µs (`/proc` counts
    /// it in 10 ms ticks: read it over seconds, not milliseconds).
    fn cpu_us(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        // The command name may hold spaces; the fields after it do not.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks * 10_000)
    }

    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// A live direct call from patient `p` to doctor `d`; returns its room id.
    async fn create_call(&self, d: &str, p: &str) -> Result<String, String> {
        let res = self
            .http
            .post(format!("{}/api/call-sessions/start", self.url))
            .bearer_auth(self.token(p, "patient"))
            .json(&json!({ "doctor_id": d }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = res.json().await.map_err(|e| e.to_string())?;
        body["data"]["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("call not created: {body}"))
    }

    /// A chat session between customer `c` and mechanic `m`, accepted;
    /// returns its room id.
    async fn create_chat(&self, m: &str, c: &str) -> Result<String, String> {
        let post = |path: String, token: String, body: Value| async move {
            let res = self
                .http
                .post(format!("{}{path}", self.url))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            res.json::<Value>().await.map_err(|e| e.to_string())
        };
        let made = post(
            "/api/chat-sessions".into(),
            self.token(c, "customer"),
            json!({ "concern": "load" }),
        )
        .await?;
        let id = made["data"]["id"]
            .as_str()
            .ok_or_else(|| format!("chat not created: {made}"))?
            .to_owned();
        let taken = post(
            format!("/api/chat-sessions/{id}/accept"),
            self.token(m, "mechanic"),
            json!({}),
        )
        .await?;
        if taken["data"]["status"] != "waiting" {
            return Err(format!("chat not accepted: {taken}"));
        }
        Ok(id)
    }

    /// `n` calls, eight requests at a time.
    async fn create_calls(&self, tag: &str, n: usize) -> Result<Vec<String>, String> {
        let mut rooms = vec![String::new(); n];
        for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
            let made = futures_util::future::join_all(chunk.iter().map(|i| {
                let (d, p) = self.pair(tag, *i);
                async move { (*i, self.create_call(&d, &p).await) }
            }))
            .await;
            for (i, room) in made {
                rooms[i] = room?;
            }
        }
        Ok(rooms)
    }

    fn pair(&self, tag: &str, i: usize) -> (String, String) {
        (
            format!("{}-{tag}-d{i}", self.run),
            format!("{}-{tag}-p{i}", self.run),
        )
    }
}

#[derive(Default, Clone, Copy)]
struct Percentiles {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// Percentiles in milliseconds of samples in microseconds.
fn percentiles(samples: &mut [u64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i] as f64 / 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

// ---- connect -----------------------------------------------------------------

/// `sockets` idle authenticated connections, `concurrency` connects in flight
/// at any moment; half hosts, half guests (both connect-time resync paths).
async fn connect_all(
    ctx: &Ctx,
    sockets: usize,
    concurrency: usize,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let conns: Vec<Result<Conn, String>> = futures_util::stream::iter(0..sockets)
        .map(|i| {
            let role = if i % 2 == 0 { "doctor" } else { "patient" };
            let token = ctx.token(&format!("{}-c{i}", ctx.run), role);
            let ws = ctx.ws.clone();
            async move { Conn::connect(&ws, &token).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut idle = Vec::with_capacity(sockets);
    for c in conns {
        idle.push(tokio::task::spawn_local(c?.idle()));
    }
    Ok(idle)
}

fn close_all(idle: Vec<tokio::task::JoinHandle<()>>) {
    for t in idle {
        t.abort();
    }
}

fn per(total: Option<u64>, n: usize) -> Option<f64> {
    total.map(|t| round(t as f64 / n.max(1) as f64))
}

fn minus(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.saturating_sub(b?))
}

/// What one round of connects cost the server.
struct Connected {
    open: Vec<tokio::task::JoinHandle<()>>,
    secs: f64,
    /// Its CPU up to the end of the settle time: the connect handlers
    /// (the resync) run after CONNECT.
    cpu: Option<u64>,
    /// Its RSS after the settle time.
    rss: Option<u64>,
}

async fn connect_phase(
    ctx: &Ctx,
    sockets: usize,
    concurrency: usize,
    settle: Duration,
) -> Result<Connected, String> {
    let cpu = ctx.cpu_us();
    let started = Instant::now();
    let open = connect_all(ctx, sockets, concurrency).await?;
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    Ok(Connected {
        open,
        secs,
        cpu: minus(ctx.cpu_us(), cpu),
        rss: ctx.rss_kib(),
    })
}

async fn connect_scenario(
    ctx: &Ctx,
    sockets: usize,
    concurrency: usize,
    (settle, drain): (u64, u64),
    cycles: usize,
) -> Result<Value, String> {
    let settle = Duration::from_secs(settle);
    let drain = Duration::from_secs(drain);
    let idle_rss = ctx.rss_kib();

    let first = connect_phase(ctx, sockets, concurrency, settle).await?;
    // Every client reconnects at once, as after a network blip: the old
    // sockets are still being closed while the new ones arrive.
    close_all(first.open);
    let again = connect_phase(ctx, sockets, concurrency, settle).await?;
    close_all(again.open);
    tokio::time::sleep(drain).await;
    let mut closed_rss = vec![ctx.rss_kib()];
    for _ in 0..cycles {
        close_all(connect_all(ctx, sockets, concurrency).await?);
        tokio::time::sleep(drain).await;
        closed_rss.push(ctx.rss_kib());
    }
    let kib_per =
        |rss: Option<u64>| minus(rss, idle_rss).map(|grown| round(grown as f64 / sockets as f64));
    Ok(json!({
        "sockets": sockets,
        "concurrency": concurrency,
        "seconds": round(first.secs),
        "connects_per_sec": round(sockets as f64 / first.secs),
        "cpu_us_per_connect": per(first.cpu, sockets),
        "reconnects_per_sec": round(sockets as f64 / again.secs),
        "cpu_us_per_reconnect": per(again.cpu, sockets),
        "rss_idle_kib": idle_rss,
        "rss_open_kib": first.rss,
        "kib_per_socket": kib_per(first.rss),
        "kib_per_socket_after_reconnect": kib_per(again.rss),
        "rss_after_close_kib": closed_rss,
    }))
}

// ---- relay -------------------------------------------------------------------

struct PairStats {
    received: AtomicU64,
    notify: Notify,
}

async fn relay_scenario(
    ctx: &Rc<Ctx>,
    pairs: usize,
    rate: u64,
    seconds: u64,
    window: u64,
) -> Result<Value, String> {
    let tag = format!("r{rate}");
    let rooms = ctx.create_calls(&tag, pairs).await?;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        let (d, p) = ctx.pair(&tag, i);
        let doctor = Conn::connect(&ctx.ws, &ctx.token(&d, "doctor")).await?;
        let patient = Conn::connect(&ctx.ws_b, &ctx.token(&p, "patient")).await?;
        let [doctor, patient] = join_both("webrtc:join_room", room, [doctor, patient]).await?;
        senders.push((doctor, room.clone()));
        receivers.push(patient);
    }
    throughput(ctx, RELAY, senders, receivers, rate, seconds, window).await
}

/// Both connections join `room` with `event`; each must be admitted.
async fn join_both(event: &str, room: &str, mut conns: [Conn; 2]) -> Result<[Conn; 2], String> {
    let join = json!({ "roomId": room }).to_string();
    for c in &mut conns {
        let ack = c.request(event, &join).await?;
        if !ack.contains("\"ok\":true") {
            return Err(format!("join refused: {ack}"));
        }
    }
    Ok(conns)
}

async fn chat_scenario(
    ctx: &Rc<Ctx>,
    pairs: usize,
    rate: u64,
    seconds: u64,
    window: u64,
) -> Result<Value, String> {
    let tag = format!("chat{rate}");
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..pairs {
        let (m, c) = ctx.pair(&tag, i);
        let room = ctx.create_chat(&m, &c).await?;
        let customer = Conn::connect(&ctx.ws, &ctx.token(&c, "customer")).await?;
        let mechanic = Conn::connect(&ctx.ws, &ctx.token(&m, "mechanic")).await?;
        let [customer, mechanic] = join_both("chat:join_room", &room, [customer, mechanic]).await?;
        senders.push((customer, room));
        receivers.push(mechanic);
    }
    throughput(ctx, CHAT, senders, receivers, rate, seconds, window).await
}

/// Each sender sends `flow`'s frames to its receiver, at a fixed total
/// `rate` or (0) with `window` in flight per pair; delivered per second and
/// latency over the measured window.
async fn throughput(
    ctx: &Rc<Ctx>,
    flow: Flow,
    senders: Vec<(Conn, String)>,
    receivers: Vec<Conn>,
    rate: u64,
    seconds: u64,
    window: u64,
) -> Result<Value, String> {
    let pairs = senders.len();
    // Let presence events drain before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs(seconds);
    let start = Instant::now();
    let window_start = ctx.micros() + warmup.as_micros() as u64;
    let window_end = window_start + measure.as_micros() as u64;
    let stop_at = start + warmup + measure;

    let mut tasks = Vec::new();
    let mut samples_tasks = Vec::new();
    let per_sender_interval = if rate > 0 {
        Some(Duration::from_secs_f64(pairs as f64 / rate as f64))
    } else {
        None
    };
    for (i, (sender, receiver)) in senders.into_iter().zip(receivers).enumerate() {
        let stats = Arc::new(PairStats {
            received: AtomicU64::new(0),
            notify: Notify::new(),
        });
        let offset = per_sender_interval.map(|iv| iv.mul_f64(i as f64 / pairs as f64));
        tasks.push(tokio::task::spawn_local(send_loop(
            ctx.clone(),
            flow,
            sender,
            stats.clone(),
            stop_at,
            per_sender_interval.zip(offset),
            window,
        )));
        samples_tasks.push(tokio::task::spawn_local(receive_loop(
            ctx.clone(),
            flow,
            receiver,
            stats,
            (window_start, window_end),
            stop_at + Duration::from_millis(500),
        )));
    }
    // The server's CPU over the measured window only.
    let cpu = {
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until((start + warmup).into()).await;
            let before = ctx.cpu_us();
            tokio::time::sleep(measure).await;
            minus(ctx.cpu_us(), before)
        })
    };
    let mut sent = 0;
    for t in tasks {
        sent += t.await.map_err(|e| e.to_string())??;
    }
    let cpu = cpu.await.map_err(|e| e.to_string())?;
    let (mut samples, mut out_of_order) = (Vec::new(), 0);
    for t in samples_tasks {
        let (received, late) = t.await.map_err(|e| e.to_string())?;
        samples.extend(received);
        out_of_order += late;
    }
    let delivered = samples.len();
    let p = percentiles(&mut samples);
    Ok(json!({
        "pairs": pairs,
        "target_rate": rate,
        "seconds": seconds,
        "sent_total": sent,
        "delivered_in_window": delivered,
        "out_of_order": out_of_order,
        "delivered_per_sec": round(delivered as f64 / measure.as_secs_f64()),
        "cpu_us_per_msg": cpu.map(|c| round3(c as f64 / delivered.max(1) as f64)),
        "p50_ms": round3(p.p50),
        "p99_ms": round3(p.p99),
        "p999_ms": round3(p.p999),
        "max_ms": round3(p.max),
    }))
}

/// A realistic host candidate; the send time rides in `t` (µs since start)
/// and the sender's sequence number in `s`.
fn candidate(room: &str, t: u64, seq: u64) -> String {
    format!(
        "42[\"webrtc:ice_candidate\",{{\"roomId\":\"{room}\",\"candidate\":{{\"candidate\":\"candidate:842163049 1 udp 1677729535 192.168.1.20 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag sXbM network-cost 999\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}},\"t\":{t},\"s\":{seq}}}]"
    )
}

/// A chat message whose content carries the send time; a client message id
/// per message, as the seeds' clients send.
fn chat_message(room: &str, t: u64, seq: u64) -> String {
    format!(
        "42[\"chat:send_message\",{{\"roomId\":\"{room}\",\"content\":\"t{t} — is the noise from the front left wheel when braking?\",\"clientMessageId\":\"k{seq}\"}}]"
    )
}

/// `sender` is the connection and the room it sends to.
async fn send_loop(
    ctx: Rc<Ctx>,
    flow: Flow,
    (conn, room): (Conn, String),
    stats: Arc<PairStats>,
    stop_at: Instant,
    paced: Option<(Duration, Duration)>,
    window: u64,
) -> Result<u64, String> {
    let (mut sink, mut stream) = conn.ws.split();
    // The sender's own socket receives only pings and presence: drain them.
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let reader = tokio::task::spawn_local(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Text(t) = m
                && t.as_str() == "2"
            {
                let _ = pong_tx.send(());
            }
        }
    });
    let mut sent: u64 = 0;
    let result = async {
        match paced {
            Some((interval, offset)) => {
                let first = tokio::time::Instant::now() + offset;
                let mut tick = tokio::time::interval_at(first, interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                while Instant::now() < stop_at {
                    tick.tick().await;
                    while pong_rx.try_recv().is_ok() {
                        sink.feed(Message::text("3"))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    sink.send(Message::text((flow.frame)(&room, ctx.micros(), sent)))
                        .await
                        .map_err(|e| e.to_string())?;
                    sent += 1;
                }
            }
            None => {
                while Instant::now() < stop_at {
                    let in_flight = sent.saturating_sub(stats.received.load(Ordering::Relaxed));
                    if in_flight >= window {
                        let notified = stats.notify.notified();
                        if sent.saturating_sub(stats.received.load(Ordering::Relaxed)) >= window {
                            let _ =
                                tokio::time::timeout(Duration::from_millis(100), notified).await;
                        }
                        continue;
                    }
                    while pong_rx.try_recv().is_ok() {
                        sink.feed(Message::text("3"))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    for _ in in_flight..window {
                        sink.feed(Message::text((flow.frame)(&room, ctx.micros(), sent)))
                            .await
                            .map_err(|e| e.to_string())?;
                        sent += 1;
                    }
                    sink.flush().await.map_err(|e| e.to_string())?;
                }
            }
        }
        Ok::<_, String>(())
    }
    .await;
    reader.abort();
    result.map(|()| sent)
}

async fn receive_loop(
    ctx: Rc<Ctx>,
    flow: Flow,
    conn: Conn,
    stats: Arc<PairStats>,
    (from, to): (u64, u64),
    until: Instant,
) -> (Vec<u64>, u64) {
    let mut ws = conn.ws;
    let mut samples = Vec::new();
    // One sender per pair: its sequence numbers must arrive increasing.
    let (mut last_seq, mut out_of_order) = (None, 0);
    // One timer for the whole loop, not one per message.
    let deadline = tokio::time::sleep_until(tokio::time::Instant::from_std(until));
    tokio::pin!(deadline);
    loop {
        let m = tokio::select! {
            biased;
            m = ws.next() => m,
            () = &mut deadline => break,
        };
        let Some(Ok(m)) = m else { break };
        let Message::Text(t) = m else { continue };
        let t = t.as_str();
        if t == "2" {
            let _ = ws.send(Message::text("3")).await;
            continue;
        }
        if !t.starts_with(flow.received) {
            continue;
        }
        let now = ctx.micros();
        stats.received.fetch_add(1, Ordering::Relaxed);
        stats.notify.notify_one();
        if let Some(seq) = number_after(t, flow.seq_marker) {
            if last_seq.is_some_and(|last| seq <= last) {
                out_of_order += 1;
            }
            last_seq = last_seq.max(Some(seq));
        }
        if let Some(sent) = number_after(t, flow.marker)
            && sent >= from
            && sent < to
        {
            samples.push(now.saturating_sub(sent));
        }
    }
    (samples, out_of_order)
}

/// The decimal number right after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> Option<u64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

// ---- setup -------------------------------------------------------------------

const SDP: &str = "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0 1\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\\r\\nc=IN IP4 0.0.0.0\\r\\na=ice-ufrag:sXbM\\r\\na=ice-pwd:7VzBrJ5xAPUfYAXWkAS1aTfq\\r\\na=fingerprint:sha-256 5B:D3:8E:66:0E:7D:D3:F3:8E:E6:80:28:19:FC:55:AD:58:5D:B9:1D:72:41:C3:D0:2F:12:28:A4:CE:43:1B:3A\\r\\na=setup:actpass\\r\\na=mid:0\\r\\na=sendrecv\\r\\na=rtcp-mux\\r\\na=rtpmap:111 opus/48000/2\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\\r\\nc=IN IP4 0.0.0.0\\r\\na=mid:1\\r\\na=sendrecv\\r\\na=rtpmap:96 VP8/90000\\r\\n";

/// How long one call's setup took, in µs: the whole, and each phase.
struct SetupTimes {
    total: u64,
    /// The REST call that creates the call.
    rest: u64,
    /// Both sockets connected (in parallel).
    connect: u64,
    /// Both joins answered (in parallel).
    join: u64,
    /// The offer relayed to the patient and the answer back.
    relay: u64,
}

/// One call set up from nothing: the REST call that creates it, both
/// connects, both joins, offer and answer.
async fn setup_one(ctx: &Ctx, d: &str, p: &str) -> Result<(SetupTimes, Conn, Conn), String> {
    let t0 = Instant::now();
    let micros = |from: Instant| u64::try_from(from.elapsed().as_micros()).unwrap_or(u64::MAX);
    let room = ctx.create_call(d, p).await?;
    let rest = micros(t0);
    let room = room.as_str();
    let (dt, pt) = (ctx.token(d, "doctor"), ctx.token(p, "patient"));
    let t1 = Instant::now();
    let (doctor, patient) = tokio::join!(Conn::connect(&ctx.ws, &dt), Conn::connect(&ctx.ws, &pt));
    let (mut doctor, mut patient) = (doctor?, patient?);
    let connect = micros(t1);
    let t2 = Instant::now();
    let join = json!({ "roomId": room }).to_string();
    let (a, b) = tokio::join!(
        doctor.request("webrtc:join_room", &join),
        patient.request("webrtc:join_room", &join),
    );
    for ack in [a?, b?] {
        if !ack.contains("\"ok\":true") {
            return Err(format!("join refused: {ack}"));
        }
    }
    let join = micros(t2);
    let t3 = Instant::now();
    let offer = format!(
        "42[\"webrtc:offer\",{{\"roomId\":\"{room}\",\"offer\":{{\"type\":\"offer\",\"sdp\":\"{SDP}\"}}}}]"
    );
    let answer = format!(
        "42[\"webrtc:answer\",{{\"roomId\":\"{room}\",\"answer\":{{\"type\":\"answer\",\"sdp\":\"{SDP}\"}}}}]"
    );
    doctor.send(offer).await?;
    patient.expect("webrtc:offer").await?;
    patient.send(answer).await?;
    doctor.expect("webrtc:answer").await?;
    let times = SetupTimes {
        total: micros(t0),
        rest,
        connect,
        join,
        relay: micros(t3),
    };
    Ok((times, doctor, patient))
}

async fn setup_scenario(ctx: &Rc<Ctx>, pairs: usize, rate: u64) -> Result<Value, String> {
    let tag = "s";
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(pairs);
    for i in 0..pairs {
        tick.tick().await;
        let ctx = ctx.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let (d, p) = ctx.pair(tag, i);
            setup_one(&ctx, &d, &p).await
        }));
    }
    let mut times = Vec::with_capacity(pairs);
    let mut open = Vec::with_capacity(pairs * 2);
    for t in tasks {
        let (took, d, p) = t.await.map_err(|e| e.to_string())??;
        times.push(took);
        open.push(d);
        open.push(p);
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(open);
    let phase =
        |f: fn(&SetupTimes) -> u64| percentiles(&mut times.iter().map(f).collect::<Vec<_>>());
    let (p, r, c, j, o) = (
        phase(|t| t.total),
        phase(|t| t.rest),
        phase(|t| t.connect),
        phase(|t| t.join),
        phase(|t| t.relay),
    );
    Ok(json!({
        "pairs": pairs,
        "target_rate": rate,
        "achieved_rate": round(pairs as f64 / elapsed),
        "p50_ms": round3(p.p50),
        "p99_ms": round3(p.p99),
        "max_ms": round3(p.max),
        "rest_p50_ms": round3(r.p50),
        "rest_p99_ms": round3(r.p99),
        "connect_p50_ms": round3(c.p50),
        "connect_p99_ms": round3(c.p99),
        "join_p50_ms": round3(j.p50),
        "join_p99_ms": round3(j.p99),
        "offer_answer_p50_ms": round3(o.p50),
        "offer_answer_p99_ms": round3(o.p99),
    }))
}

// ---- report ------------------------------------------------------------------

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A throughput measure's name: `relay 100 pairs saturated`, `chat 50 pairs 1000/s`.
fn load_name(what: &str, pairs: usize, rate: u64) -> String {
    if rate == 0 {
        format!("{what} {pairs} pairs saturated")
    } else {
        format!("{what} {pairs} pairs {rate}/s")
    }
}

fn print_table(results: &serde_json::Map<String, Value>) {
    println!(
        "{:<28} {:>14} {:>10} {:>10} {:>10}",
        "measure", "rate", "p50 ms", "p99 ms", "p999 ms"
    );
    for (name, r) in results {
        let rate = r
            .get("connects_per_sec")
            .or_else(|| r.get("delivered_per_sec"))
            .or_else(|| r.get("achieved_rate"))
            .cloned()
            .unwrap_or(Value::Null);
        let cell = |k: &str| r.get(k).map_or("-".to_owned(), Value::to_string);
        println!(
            "{:<28} {:>14} {:>10} {:>10} {:>10}",
            name,
            rate.to_string(),
            cell("p50_ms"),
            cell("p99_ms"),
            cell("p999_ms")
        );
        for (key, label) in [
            ("kib_per_socket", "server KiB per socket"),
            ("kib_per_socket_after_reconnect", "  after all reconnect"),
            ("rss_idle_kib", "server RSS idle KiB"),
            ("rss_after_close_kib", "  after all close KiB"),
            ("cpu_us_per_connect", "server CPU µs per connect"),
            ("reconnects_per_sec", "reconnects per second"),
            ("cpu_us_per_msg", "server CPU µs per message"),
            ("out_of_order", "received out of order"),
            ("rest_p50_ms", "REST start p50 ms"),
            ("rest_p99_ms", "REST start p99 ms"),
            ("connect_p50_ms", "both connects p50 ms"),
            ("connect_p99_ms", "both connects p99 ms"),
            ("join_p50_ms", "both joins p50 ms"),
            ("join_p99_ms", "both joins p99 ms"),
            ("offer_answer_p50_ms", "offer and answer p50 ms"),
            ("offer_answer_p99_ms", "offer and answer p99 ms"),
        ] {
            if let Some(v) = r.get(key).filter(|v| !v.is_null()) {
                println!("  {label:<26} {:>14}", v.to_string());
            }
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let ctx = Rc::new(Ctx {
        ws: ws_url(&cli.url),
        ws_b: ws_url(cli.url_b.as_deref().unwrap_or(&cli.url)),
        url: cli.url.trim_end_matches('/').to_owned(),
        secret: cli.secret,
        pid: cli.server_pid,
        run: cli.run_id.unwrap_or_else(|| {
            format!(
                "lg{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            )
        }),
        http: reqwest::Client::new(),
        epoch: Instant::now(),
    });
    let mut results = serde_json::Map::new();
    let scenarios = match cli.scenario {
        // Both arrival rates (issue 18): 10 and 100 connects in flight; the
        // connect-and-close cycles once, at the faster one.
        Scenario::All => vec![
            Scenario::Connect {
                sockets: 10_000,
                concurrency: 10,
                settle: 5,
                drain: 12,
                cycles: 0,
            },
            Scenario::Connect {
                sockets: 10_000,
                concurrency: 100,
                settle: 5,
                drain: 12,
                cycles: 5,
            },
            Scenario::Relay {
                pairs: 100,
                rate: 0,
                seconds: 5,
                window: 64,
            },
            Scenario::Relay {
                pairs: 100,
                rate: 20_000,
                seconds: 5,
                window: 64,
            },
            Scenario::Setup {
                pairs: 1000,
                rate: 100,
            },
        ],
        one => vec![one],
    };
    for s in scenarios {
        let (name, r) = match s {
            Scenario::Connect {
                sockets,
                concurrency,
                settle,
                drain,
                cycles,
            } => (
                format!("connect {sockets} by {concurrency}"),
                connect_scenario(&ctx, sockets, concurrency, (settle, drain), cycles).await?,
            ),
            Scenario::Relay {
                pairs,
                rate,
                seconds,
                window,
            } => (
                load_name("relay", pairs, rate),
                relay_scenario(&ctx, pairs, rate, seconds, window).await?,
            ),
            Scenario::Setup { pairs, rate } => (
                format!("setup {pairs} pairs {rate}/s"),
                setup_scenario(&ctx, pairs, rate).await?,
            ),
            Scenario::Chat {
                pairs,
                rate,
                seconds,
                window,
            } => (
                load_name("chat", pairs, rate),
                chat_scenario(&ctx, pairs, rate, seconds, window).await?,
            ),
            Scenario::All => continue,
        };
        eprintln!("{name}: {r}");
        results.insert(name, r);
        // Closed sockets and their rooms go before the next measure
        // (10,000 disconnects take the server a moment).
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    print_table(&results);
    println!("{}", Value::Object(results));
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One thread: the generator is pinned to one core next to the server's.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("consultd-loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consultd-loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receiver's order and latency checks read these two numbers; if
    /// a marker stopped matching, the checks would pass on nothing.
    #[test]
    fn each_flow_finds_the_send_time_and_the_sequence_in_its_frame() {
        for flow in [RELAY, CHAT] {
            let frame = (flow.frame)("room-1", 1_234_567, 42);
            assert_eq!(number_after(&frame, flow.marker), Some(1_234_567));
            assert_eq!(number_after(&frame, flow.seq_marker), Some(42));
        }
        assert_eq!(number_after("42[\"x\",{}]", RELAY.seq_marker), None);
    }
}
