//! Random command sequences against the schedule, queue and call machines
//! composed as the server composes them — queue calls, direct calls and
//! tutoring requests on the one call machine; after every step the
//! contract's invariants must hold.

use std::collections::HashMap;

use chrono::{Duration, TimeZone};
use consultd_domain::*;
use proptest::prelude::*;

const HOSTS: [&str; 2] = ["doc0", "doc1"];
const GUESTS: [&str; 3] = ["pat0", "pat1", "pat2"];
const TTL_SECS: i64 = 60;

#[derive(Debug, Clone)]
enum Op {
    Schedule(usize, ScheduleCommand),
    Join(usize, usize),
    Ready(usize, usize, bool),
    Reset(usize, usize),
    StartCall(usize, usize),
    /// (guest, host, appointment key `k0`/`k1` or none): §5's start.
    Direct(usize, usize, Option<usize>),
    /// (learner, teacher): §6's request.
    Tutor(usize, usize),
    /// (actor index over hosts then guests, call index, command)
    Call(usize, usize, CallCommand),
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0..2usize,
            prop_oneof![Just(ScheduleCommand::Start), Just(ScheduleCommand::End)]
        )
            .prop_map(|(h, c)| Op::Schedule(h, c)),
        (0..3usize, 0..2usize).prop_map(|(p, s)| Op::Join(p, s)),
        (0..3usize, 0..2usize, any::<bool>()).prop_map(|(p, s, r)| Op::Ready(p, s, r)),
        (0..2usize, 0..3usize).prop_map(|(h, p)| Op::Reset(h, p)),
        (0..2usize, 0..3usize).prop_map(|(h, p)| Op::StartCall(h, p)),
        (0..3usize, 0..2usize, proptest::option::of(0..2usize))
            .prop_map(|(p, h, k)| Op::Direct(p, h, k)),
        (0..3usize, 0..2usize).prop_map(|(p, h)| Op::Tutor(p, h)),
        (
            0..5usize,
            0..8usize,
            proptest::sample::select(CallCommand::ALL.to_vec())
        )
            .prop_map(|(a, c, cmd)| Op::Call(a, c, cmd)),
        (0..45_000i64).prop_map(Op::Tick),
    ]
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

struct World {
    now: Timestamp,
    next_id: u64,
    schedules: Vec<Schedule>,
    /// In join order.
    entries: Vec<QueueEntry>,
    calls: Vec<Call>,
    call_entry: HashMap<CallId, EntryId>,
    /// Each call's front door, and a direct call's appointment key.
    kinds: HashMap<CallId, CallKind>,
    appointments: HashMap<CallId, AppointmentId>,
    /// Statuses each call has been in, to check terminal stays terminal.
    history: HashMap<CallId, Vec<CallStatus>>,
}

impl World {
    fn new() -> Self {
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap();
        let schedules = HOSTS
            .iter()
            .enumerate()
            .map(|(i, h)| {
                Schedule::create(
                    ScheduleId::new(format!("s{i}")),
                    user(h),
                    Slot::parse("2026-11-21", "09:00", "17:00").unwrap(),
                    now,
                )
            })
            .collect();
        Self {
            now,
            next_id: 0,
            schedules,
            entries: vec![],
            calls: vec![],
            call_entry: HashMap::new(),
            kinds: HashMap::new(),
            appointments: HashMap::new(),
            history: HashMap::new(),
        }
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{:08}", self.next_id)
    }

    fn live_entry(&mut self, sched: usize, guest: usize) -> Option<&mut QueueEntry> {
        let sid = self.schedules[sched].id.clone();
        self.entries
            .iter_mut()
            .rev()
            .find(|e| e.schedule_id == sid && e.patient_id == user(GUESTS[guest]) && e.is_live())
    }

    /// Live queue and direct calls: what "one call at a time" counts.
    fn live_calls(&self) -> impl Iterator<Item = &Call> {
        self.calls
            .iter()
            .filter(|c| c.status.is_live() && self.kinds[&c.id].is_call())
    }

    fn busy(&self, host: &UserId, guest: &UserId) -> Busy {
        Busy {
            host: self.live_calls().any(|c| &c.host.user_id == host),
            guest: self.live_calls().any(|c| &c.guest.user_id == guest),
        }
    }

    fn add_call(&mut self, call: Call, kind: CallKind) {
        self.history.insert(call.id.clone(), vec![call.status]);
        self.kinds.insert(call.id.clone(), kind);
        self.calls.push(call);
    }

    fn follow(&mut self, call: usize) {
        let c = &self.calls[call];
        let (id, to) = (c.id.clone(), c.status);
        self.history.get_mut(&id).unwrap().push(to);
        let Some(eid) = self.call_entry.get(&id).cloned() else {
            return;
        };
        let e = self.entries.iter_mut().find(|e| e.id == eid).unwrap();
        let open = self
            .schedules
            .iter()
            .find(|s| s.id == e.schedule_id)
            .unwrap()
            .is_open();
        e.on_call(&id, to, open);
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Schedule(h, cmd) => {
                let actor = user(HOSTS[h]);
                if let Ok(Some(t)) = self.schedules[h].handle(&actor, cmd)
                    && t.to == ScheduleStatus::Completed
                {
                    let sid = self.schedules[h].id.clone();
                    for e in self.entries.iter_mut().filter(|e| e.schedule_id == sid) {
                        e.close();
                    }
                }
            }
            Op::Join(p, s) => {
                if self.live_entry(s, p).is_none() {
                    let id = EntryId::new(self.id());
                    let now = self.now;
                    if let Ok(e) =
                        QueueEntry::join(id, &self.schedules[s], user(GUESTS[p]), None, now)
                    {
                        self.entries.push(e);
                    }
                }
            }
            Op::Ready(p, s, ready) => {
                if let Some(e) = self.live_entry(s, p) {
                    let _ = e.set_ready(&user(GUESTS[p]), ready);
                }
            }
            Op::Reset(h, p) => {
                let sched = self.schedules[h].clone();
                let pid = user(GUESTS[p]);
                let has_live = self.live_entry(h, p).is_some();
                if let Some(e) = self
                    .entries
                    .iter_mut()
                    .rev()
                    .find(|e| e.schedule_id == sched.id && e.patient_id == pid)
                {
                    // The store's unique index: a DONE entry cannot come
                    // back while the guest has a newer live one.
                    if e.is_live() || !has_live {
                        let _ = e.reset(&sched);
                    }
                }
            }
            Op::StartCall(h, p) => {
                let host = Party::new(user(HOSTS[h]), None);
                let busy = self.busy(&host.user_id, &user(GUESTS[p]));
                let call_id = CallId::new(self.id());
                let (now, sched) = (self.now, self.schedules[h].clone());
                if let Some(e) = self.live_entry(h, p) {
                    let eid = e.id.clone();
                    if let Ok((call, _)) = start_queue_call(
                        &sched,
                        &host,
                        e,
                        busy,
                        call_id.clone(),
                        now,
                        Duration::seconds(TTL_SECS),
                    ) {
                        self.call_entry.insert(call_id, eid);
                        self.add_call(call, CallKind::Queue);
                    }
                }
            }
            Op::Direct(p, h, key) => {
                let caller = user(GUESTS[p]);
                let host = user(HOSTS[h]);
                let key = key.map(|k| AppointmentId::parse(format!("k{k}")).unwrap());
                // What the service reads: the live call holding the key, or
                // without one the caller's live direct call to this host.
                let id = CallId::new(self.id());
                let live = self.calls.iter().find(|c| {
                    c.status.is_live()
                        && match &key {
                            Some(k) => self.appointments.get(&c.id) == Some(k),
                            None => {
                                self.kinds[&c.id] == CallKind::Direct
                                    && c.guest.user_id == caller
                                    && c.host.user_id == host
                            }
                        }
                });
                let busy = self.busy(&host, &caller);
                let live = live.cloned();
                let decision = start_direct_call(
                    Party::new(caller.clone(), None),
                    Party::new(host, None),
                    live.as_ref(),
                    busy,
                    id.clone(),
                    self.now,
                    Duration::seconds(TTL_SECS),
                );
                match decision {
                    Ok(DirectStart::Invite(call)) => {
                        let key = key.unwrap_or_else(|| {
                            AppointmentId::parse(format!("direct_session_{id}")).unwrap()
                        });
                        self.appointments.insert(id, key);
                        self.add_call(*call, CallKind::Direct);
                    }
                    Ok(DirectStart::Resume) => {
                        let live = live.expect("resume names a live call");
                        assert_eq!(live.guest.user_id, caller, "resumed another's call");
                    }
                    Err(_) => {}
                }
            }
            Op::Tutor(p, h) => {
                let id = CallId::new(self.id());
                let call = Call::invite(
                    id,
                    Party::new(user(HOSTS[h]), None),
                    Party::new(user(GUESTS[p]), None),
                    Side::Guest,
                    self.now,
                    Duration::seconds(TTL_SECS),
                )
                .unwrap();
                self.add_call(call, CallKind::Tutoring);
            }
            Op::Call(a, c, cmd) => {
                if self.calls.is_empty() {
                    return;
                }
                let idx = c % self.calls.len();
                let actor = if a < 2 {
                    user(HOSTS[a])
                } else {
                    user(GUESTS[a - 2])
                };
                let now = self.now;
                let res = self.calls[idx].handle(&actor, cmd, now);
                match res {
                    Ok(Some(_)) => self.follow(idx),
                    // The service expires it on the spot, as the timer would.
                    Err(CallError::Expired) if self.calls[idx].on_timeout(now).is_some() => {
                        self.follow(idx);
                    }
                    _ => {}
                }
            }
            Op::Tick(ms) => {
                self.now += Duration::milliseconds(ms);
                let now = self.now;
                for i in 0..self.calls.len() {
                    if self.calls[i].on_timeout(now).is_some() {
                        self.follow(i);
                    }
                }
            }
        }
    }

    fn check(&self) {
        // Tutoring requests are not calls for these rules.
        let live: Vec<&Call> = self.live_calls().collect();
        for h in HOSTS {
            assert!(
                live.iter().filter(|c| c.host.user_id == user(h)).count() <= 1,
                "host {h}"
            );
        }
        for g in GUESTS {
            assert!(
                live.iter().filter(|c| c.guest.user_id == user(g)).count() <= 1,
                "guest {g}"
            );
        }
        for key in self.appointments.values() {
            let holders = live
                .iter()
                .filter(|c| self.appointments.get(&c.id) == Some(key))
                .count();
            assert!(holders <= 1, "appointment {key}");
        }
        for c in &self.calls {
            // Direct calls and tutoring requests are the guest's invitation.
            let by_guest = self.kinds[&c.id] != CallKind::Queue;
            assert_eq!(c.inviter == Side::Guest, by_guest, "{}", c.id);
        }
        for e in &self.entries {
            let calls: Vec<&&Call> = live
                .iter()
                .filter(|c| self.call_entry.get(&c.id) == Some(&e.id))
                .collect();
            assert!(calls.len() <= 1, "entry {}", e.id);
            // The entry's pointer and the live call agree.
            assert_eq!(
                e.call_id.as_ref(),
                calls.first().map(|c| &c.id),
                "entry {}",
                e.id
            );
            match e.status {
                EntryStatus::InCall => assert!(matches!(
                    calls.first().map(|c| c.status),
                    Some(CallStatus::Confirmed | CallStatus::Active)
                )),
                EntryStatus::Ready => {}
                EntryStatus::Waiting | EntryStatus::Done => assert!(e.call_id.is_none()),
            }
        }
        for s in &self.schedules {
            for g in GUESTS {
                let n = self
                    .entries
                    .iter()
                    .filter(|e| e.schedule_id == s.id && e.patient_id == user(g) && e.is_live())
                    .count();
                assert!(n <= 1, "live entries of {g} in {}", s.id);
            }
            // Queue order is join order: ids and join times both ascend.
            let queue: Vec<&QueueEntry> = self
                .entries
                .iter()
                .filter(|e| e.schedule_id == s.id)
                .collect();
            assert!(
                queue
                    .windows(2)
                    .all(|w| w[0].joined_at <= w[1].joined_at && w[0].id < w[1].id)
            );
        }
        for c in &self.calls {
            let h = &self.history[&c.id];
            if let Some(first_terminal) = h.iter().position(|s| s.is_terminal()) {
                assert!(
                    h[first_terminal..].iter().all(|s| *s == h[first_terminal]),
                    "{h:?}"
                );
                assert_eq!(c.status, h[first_terminal]);
            }
            if c.status == CallStatus::Expired {
                assert!(c.ended_at.unwrap() >= c.expires_at, "expired early");
                assert!(self.now >= c.expires_at);
            }
            if c.status == CallStatus::Invited {
                assert!(
                    self.now < c.expires_at,
                    "an invitation outlived its deadline"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_for_any_command_sequence(ops in proptest::collection::vec(op(), 1..120)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
            world.check();
        }
    }
}

/// Proptest is only as good as the states it reaches: a fixed sequence that
/// walks the whole happy path through the same world.
#[test]
fn the_world_reaches_every_call_state() {
    let mut w = World::new();
    let script = [
        Op::Schedule(0, ScheduleCommand::Start),
        Op::Join(0, 0),
        Op::Ready(0, 0, true),
        Op::StartCall(0, 0),
        Op::Call(2, 0, CallCommand::Confirm),
        Op::Call(0, 0, CallCommand::Activate),
        Op::Call(2, 0, CallCommand::End),
    ];
    for op in &script {
        w.apply(op);
        w.check();
    }
    assert_eq!(w.calls[0].status, CallStatus::Ended);
    assert_eq!(w.entries[0].status, EntryStatus::Done);
    // Rejoin, get invited, let it expire: back to WAITING.
    for op in [
        Op::Join(0, 0),
        Op::Ready(0, 0, true),
        Op::StartCall(0, 0),
        Op::Tick(TTL_SECS * 1000),
    ] {
        w.apply(&op);
        w.check();
    }
    assert_eq!(w.calls[1].status, CallStatus::Expired);
    assert_eq!(w.entries[1].status, EntryStatus::Waiting);
}

/// The direct and tutoring doors through the same world: a retry resumes,
/// another caller is refused, a tutoring request ignores "busy".
#[test]
fn the_world_takes_direct_calls_and_tutoring_requests() {
    let mut w = World::new();
    let steps = [
        (Op::Direct(0, 0, Some(0)), 1),
        (Op::Direct(0, 0, Some(0)), 1), // the caller's retry: resumed
        (Op::Direct(1, 1, Some(0)), 1), // another caller, same key: refused
        (Op::Direct(1, 0, None), 1),    // the doctor is busy
        (Op::Tutor(1, 0), 2),           // a tutoring request is not a call
        (Op::Direct(2, 1, None), 3),
        (Op::Direct(2, 1, None), 3), // keyless retry: resumed
    ];
    for (op, calls) in steps {
        w.apply(&op);
        w.check();
        assert_eq!(w.calls.len(), calls, "after {op:?}");
    }
    // doc0 confirms the direct call, pat0 ends it; doc0 accepts the request.
    for op in [
        Op::Call(0, 0, CallCommand::Confirm),
        Op::Call(2, 0, CallCommand::End),
        Op::Call(0, 1, CallCommand::Confirm),
    ] {
        w.apply(&op);
        w.check();
    }
    assert_eq!(w.calls[0].status, CallStatus::Ended);
    assert_eq!(w.calls[1].status, CallStatus::Confirmed);
    // The key is free again once its call is over (pat1 and doc0 are free
    // too: their accepted tutoring session is not a call).
    w.apply(&Op::Direct(1, 0, Some(0)));
    w.check();
    assert_eq!(w.calls.len(), 4);
    w.apply(&Op::Tick(TTL_SECS * 1000));
    w.check();
    assert_eq!(w.calls[2].status, CallStatus::Expired);
}
