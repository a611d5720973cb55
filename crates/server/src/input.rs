//! Client input shared by every transport: the one reading of "an id,
//! given as a JSON string or integer" (the direct call app sends
//! `doctor_id: 123`, tokens carry numeric `sub`s, socket payloads numeric
//! `roomId`s). REST bodies, socket events, appointment keys and token
//! subjects all read ids through here, and all check them with the one
//! rule, [`consultd_domain::usable_id`].

use consultd_domain::usable_id;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A JSON string (not blank) or integer, as text; anything else (a
/// fraction, a boolean, null, an array, an object) is not an id.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// [`id_text`] of raw JSON (a socket payload's field, read lazily).
pub(crate) fn raw_id_text(raw: &serde_json::value::RawValue) -> Option<String> {
    id_text(&serde_json::from_str(raw.get()).ok()?)
}

/// An id in a request body, normalised to text like the token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdInput(pub String);

impl<'de> Deserialize<'de> for IdInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = id_text(&Value::deserialize(d)?).ok_or_else(|| {
            serde::de::Error::custom("an id must be a non-empty string or an integer")
        })?;
        if usable_id(&raw) {
            Ok(Self(raw))
        } else {
            Err(serde::de::Error::custom(
                "an id must be at most 256 characters, without control characters",
            ))
        }
    }
}

/// An optional id where `null` and `""` mean "none given" (an appointment
/// key the server then makes); `Err` for anything that is not an id.
pub(crate) fn optional_id(value: Option<&Value>) -> Result<Option<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(v) => id_text(v).filter(|id| usable_id(id)).map(Some).ok_or(()),
    }
}

/// In the API documents: a non-empty string or an integer.
impl utoipa::PartialSchema for IdInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some("an id: a non-empty string or an integer"))
            .into()
    }
}

impl utoipa::ToSchema for IdInput {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strings_or_integers() {
        let ok: IdInput = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(ok.0, "abc");
        let ok: IdInput = serde_json::from_str("123").unwrap();
        assert_eq!(ok.0, "123");
        let long = format!("\"{}\"", "x".repeat(257));
        for bad in [
            "1.5",
            "true",
            "null",
            "\"\"",
            "\"  \"",
            "[1]",
            "{}",
            "\"a\\u0000b\"",
            &long,
        ] {
            assert!(serde_json::from_str::<IdInput>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_optional_id_may_be_absent_null_or_empty() {
        assert_eq!(optional_id(None), Ok(None));
        assert_eq!(optional_id(Some(&Value::Null)), Ok(None));
        assert_eq!(optional_id(Some(&Value::from(""))), Ok(None));
        assert_eq!(optional_id(Some(&Value::from(7))), Ok(Some("7".into())));
        assert_eq!(
            optional_id(Some(&Value::from("a-1"))),
            Ok(Some("a-1".into()))
        );
        for bad in [
            Value::from(1.5),
            Value::from(true),
            Value::from("  "),
            Value::from("x".repeat(257)),
        ] {
            assert_eq!(optional_id(Some(&bad)), Err(()), "{bad}");
        }
    }

    #[test]
    fn raw_json_reads_the_same() {
        let raw = serde_json::value::RawValue::from_string("42".into()).unwrap();
        assert_eq!(raw_id_text(&raw), Some("42".into()));
        let raw = serde_json::value::RawValue::from_string("false".into()).unwrap();
        assert_eq!(raw_id_text(&raw), None);
    }
}
