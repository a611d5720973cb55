//! Random inputs: JSON values of every type and shape, and mutations of
//! well-formed ones (a field dropped, retyped, renamed, or a junk one added).

use fastrand::Rng;
use serde_json::{Map, Value, json};

/// Strings that have broken parsers before: empty, blank, control
/// characters, surrogates spelled out, huge, SQL, paths, unicode.
const NASTY: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "\u{7f}",
    "\\ud800",
    "💥🧪",
    "' OR 1=1 --",
    "../../etc/passwd",
    "direct_session_",
    "direct_session_999999999999999",
    "null",
    "<script>alert(1)</script>",
    "%00%ff",
    "\r\n\r\nHTTP/1.1 200 OK",
];

pub(crate) fn string(rng: &mut Rng) -> String {
    match rng.u8(0..6) {
        0 => NASTY[rng.usize(..NASTY.len())].to_owned(),
        1 => "x".repeat(rng.usize(0..3000)),
        2 => (0..rng.usize(0..40))
            .map(|_| char::from_u32(rng.u32(1..0x2_FFFF)).unwrap_or('?'))
            .collect(),
        _ => format!(
            "{}-{}",
            ["id", "room", "call", "user"][rng.usize(..4)],
            rng.u32(..1000)
        ),
    }
}

/// Any JSON value, up to `depth` levels of nesting.
pub(crate) fn value(rng: &mut Rng, depth: u32) -> Value {
    match rng.u8(0..10) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(rng.f64() * 1e6 - 5e5),
        4 => [json!(u64::MAX), json!(i64::MIN), json!(1e308), json!(-0.0)][rng.usize(..4)].clone(),
        5 | 6 => Value::String(string(rng)),
        7 if depth > 0 => Value::Array(
            (0..rng.usize(0..5))
                .map(|_| value(rng, depth - 1))
                .collect(),
        ),
        8 if depth > 0 => {
            let mut m = Map::new();
            for _ in 0..rng.usize(0..5) {
                m.insert(string(rng), value(rng, depth - 1));
            }
            Value::Object(m)
        }
        // Deep nesting: parsers with recursion limits must refuse, not crash.
        9 => {
            let n = rng.usize(1..200);
            serde_json::from_str(&format!("{}{}", "[".repeat(n), "]".repeat(n)))
                .unwrap_or(Value::Null)
        }
        _ => json!(rng.u32(..)),
    }
}

/// A mutation of a well-formed object: usually a small change, sometimes
/// a value of another type altogether.
pub(crate) fn mutate(rng: &mut Rng, good: Value) -> Value {
    let Value::Object(mut m) = good else {
        return value(rng, 3);
    };
    match rng.u8(0..8) {
        0 => return value(rng, 3),
        1 if !m.is_empty() => {
            let k = m
                .keys()
                .nth(rng.usize(..m.len()))
                .cloned()
                .unwrap_or_default();
            m.remove(&k);
        }
        2 | 3 if !m.is_empty() => {
            let k = m
                .keys()
                .nth(rng.usize(..m.len()))
                .cloned()
                .unwrap_or_default();
            m.insert(k, value(rng, 2));
        }
        4 => {
            m.insert(string(rng), value(rng, 2));
        }
        _ => {}
    }
    Value::Object(m)
}

/// Text that is almost JSON: truncated, doubled, with junk spliced in.
pub(crate) fn broken_json(rng: &mut Rng, good: &str) -> String {
    let cut = rng.usize(..=good.len());
    let cut = (0..=cut)
        .rev()
        .find(|i| good.is_char_boundary(*i))
        .unwrap_or(0);
    match rng.u8(0..4) {
        0 => good[..cut].to_owned(),
        1 => format!("{good}{good}"),
        2 => format!("{}\u{0}{}", &good[..cut], &good[cut..]),
        _ => format!("{}{}", &good[..cut], string(rng)),
    }
}
