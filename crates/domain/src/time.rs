//! Time as the contract shows it: ISO-8601 UTC with milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// An instant. The domain never reads a clock: callers pass `now` in.
pub type Timestamp = DateTime<Utc>;

/// Formats an instant as `2026-11-21T10:00:00.000Z` (CONTRACT §2).
pub fn format_timestamp(at: Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde helpers so that every timestamp in a payload has the contract's shape.
pub mod serde_millis {
    use super::{Timestamp, format_timestamp};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as ISO-8601 UTC with milliseconds.
    pub fn serialize<S: Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_timestamp(*at))
    }

    /// Accepts any RFC 3339 instant and normalises it to UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let raw = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        assert_eq!(format_timestamp(at), "2026-11-21T10:00:00.000Z");
        let at = at + chrono::Duration::milliseconds(7);
        assert_eq!(format_timestamp(at), "2026-11-21T10:00:00.007Z");
    }

    #[test]
    fn serde_round_trip_normalises_offsets() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Row {
            #[serde(with = "serde_millis")]
            at: Timestamp,
        }
        let row: Row = serde_json::from_str(r#"{"at":"2026-11-21T12:00:00.250+02:00"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"at":"2026-11-21T10:00:00.250Z"}"#
        );
    }
}
