//! Random command sequences against chat sessions as the server drives
//! them (accepts by several hosts, presence changes, ends by anyone, the
//! timer at random instants); after every step the support chat app's rules must hold.

use chrono::{Duration, TimeZone};
use consultd_domain::*;
use proptest::prelude::*;

/// Customer `c0`; hosts `m0`, `m1`; `x` is a stranger guest.
const USERS: [(&str, &str); 4] = [
    ("c0", "customer"),
    ("m0", "mechanic"),
    ("m1", "mechanic"),
    ("x", "customer"),
];

#[derive(Debug, Clone)]
enum Op {
    Accept(usize),
    End(usize),
    /// Who is in the room now (a bit per user).
    Presence(u8),
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize).prop_map(Op::Accept),
        (0..4usize).prop_map(Op::End),
        (0..16u8).prop_map(Op::Presence),
        (0..400_000i64).prop_map(Op::Tick),
    ]
}

fn principal(i: usize) -> Principal {
    let (id, role) = USERS[i];
    let (role, class) = RoleMap::default().resolve(role).unwrap();
    Principal {
        user_id: UserId::new(id).unwrap(),
        role,
        class,
        name: None,
    }
}

fn rank(s: ChatStatus) -> u8 {
    match s {
        ChatStatus::Pending => 0,
        ChatStatus::Waiting => 1,
        ChatStatus::Live => 2,
        ChatStatus::Ended => 3,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn chat_sessions_keep_their_rules(ops in proptest::collection::vec(op(), 1..40)) {
        let t0 = chrono::Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap();
        let duration = ChatDuration::from_minutes(5.0).unwrap();
        let mut now = t0;
        let mut s = ChatSession::open(consultd_domain::ChatId::new("s"), UserId::new("c0").unwrap(), None, duration, t0);
        let mut first_mechanic: Option<UserId> = None;
        let mut presence: Vec<UserId> = vec![];
        for op in ops {
            let before = s.clone();
            let step = match &op {
                Op::Accept(i) => s.accept(&principal(*i), now).map(|t| t.map(|t| (t, "accept"))),
                Op::End(i) => s.end(&principal(*i), now).map(|t| t.map(|t| (t, "end"))),
                Op::Presence(bits) => {
                    presence = (0..4)
                        .filter(|b| bits & (1 << b) != 0)
                        .map(|b| principal(b).user_id)
                        .collect();
                    Ok(s.on_presence(&presence, now).map(|t| (t, "presence")))
                }
                Op::Tick(ms) => {
                    now += Duration::milliseconds(*ms);
                    Ok(s.on_timeout(now).map(|t| (t, "timer")))
                }
            };
            match step {
                Err(_) | Ok(None) => prop_assert_eq!(&s, &before, "{:?}: a refusal or no-op changes nothing", op),
                Ok(Some((t, why))) => {
                    prop_assert_eq!(t.from, before.status);
                    prop_assert_eq!(t.to, s.status);
                    // Forward only, never back.
                    prop_assert!(rank(t.to) > rank(t.from), "{:?} went back", t);
                    match (t.from, t.to) {
                        (ChatStatus::Pending, ChatStatus::Waiting) => prop_assert_eq!(why, "accept"),
                        (ChatStatus::Waiting, ChatStatus::Live) => {
                            prop_assert_eq!(why, "presence");
                            // Both the customer and the assigned host were there.
                            prop_assert!(presence.contains(&s.customer));
                            prop_assert!(presence.contains(s.mechanic.as_ref().unwrap()));
                        }
                        (ChatStatus::Live, ChatStatus::Ended) => prop_assert!(why == "end" || why == "timer"),
                        (ChatStatus::Pending | ChatStatus::Waiting, ChatStatus::Ended) => prop_assert_eq!(why, "end"),
                        other => prop_assert!(false, "illegal transition {:?}", other),
                    }
                }
            }
            // The first accept's host stays the host.
            if first_mechanic.is_none() {
                first_mechanic.clone_from(&s.mechanic);
            }
            prop_assert_eq!(&s.mechanic, &first_mechanic);
            if let Some(m) = &s.mechanic {
                prop_assert!(m.as_str().starts_with('m'), "only hosts are assigned");
            }
            // Timestamps follow the status.
            prop_assert_eq!(s.ended_at.is_some(), s.status == ChatStatus::Ended);
            prop_assert_eq!(s.started_at.is_some(), s.ends_at.is_some());
            if let (Some(start), Some(end)) = (s.started_at, s.ends_at) {
                prop_assert_eq!(end - start, duration.get());
            }
            if s.status == ChatStatus::Live {
                prop_assert!(s.started_at.is_some());
                // The timer never lets a live session outlast its end.
                prop_assert!(now < s.ends_at.unwrap() || matches!(op, Op::Presence(_) | Op::Accept(_) | Op::End(_)));
            }
            if let (Some(ended), Some(end)) = (s.ended_at, s.ends_at) {
                prop_assert!(ended <= end, "never ended after ends_at");
            }
            prop_assert_eq!(s.next_deadline().is_some(), s.status == ChatStatus::Live);
        }
    }
}
