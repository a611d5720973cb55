//! Event payloads read into derived structs, with the contract's error
//! messages.
//!
//! A field is a [`Field`]: absent, `null`, not of its type, or given. So a
//! payload always decodes, and each handler then checks its fields in the
//! order it documents, naming the first one that is wrong — the messages
//! do not depend on where a field sits in the object. Duplicate keys keep
//! the last one, as JavaScript does. Only the WebRTC relay reads raw JSON
//! instead (see `signal`), so that what it forwards passes byte for byte.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value as Json;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::input::id_text;

/// The longest room id accepted.
const MAX_ROOM_ID_CHARS: usize = 200;

/// One payload field as the client sent it.
#[derive(Debug, Default)]
pub(crate) enum Field<T> {
    #[default]
    Absent,
    Null,
    /// Present, but not a `T`.
    Invalid,
    Given(T),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Json::deserialize(d)? {
            Json::Null => Self::Null,
            v => T::deserialize(v).map_or(Self::Invalid, Self::Given),
        })
    }
}

impl<T: DeserializeOwned> Field<T> {
    /// The field of a raw object (`signal`'s lazy reading).
    pub(crate) fn from_raw(raw: Option<&RawValue>) -> Self {
        match raw {
            None => Self::Absent,
            Some(raw) => serde_json::from_str(raw.get()).unwrap_or(Self::Invalid),
        }
    }
}

impl<T> Field<T> {
    /// The value; `bad_request` saying it is required, or what it must be.
    pub(crate) fn required(self, name: &str, what: &str) -> Result<T, ApiError> {
        match self {
            Self::Given(v) => Ok(v),
            Self::Absent => Err(ApiError::bad_request(format!("`{name}` is required"))),
            Self::Null | Self::Invalid => {
                Err(ApiError::bad_request(format!("`{name}` must be {what}")))
            }
        }
    }

    /// The value if given; absent and `null` are "none".
    pub(crate) fn optional(self) -> Result<Option<T>, ()> {
        match self {
            Self::Given(v) => Ok(Some(v)),
            Self::Absent | Self::Null => Ok(None),
            Self::Invalid => Err(()),
        }
    }
}

/// An id given as a JSON string (not blank) or integer, as text.
#[derive(Debug)]
pub(crate) struct IdText(pub(crate) String);

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        id_text(&Json::deserialize(d)?)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom("not an id"))
    }
}

/// A payload object decoded as `T` (whose fields are all [`Field`]s, so
/// only a payload that is not an object is refused here).
pub(crate) fn parse<T: DeserializeOwned>(payload: &RawValue) -> Result<T, ApiError> {
    let not_object = || ApiError::bad_request("the payload must be an object with a `roomId`");
    // Through a map first: it keeps the last of duplicate keys, where a
    // derived struct would refuse them.
    match serde_json::from_str(payload.get()) {
        Ok(object @ Json::Object(_)) => T::deserialize(object).map_err(|_| not_object()),
        _ => Err(not_object()),
    }
}

/// The room id as the client spelled it; numbers are read as text.
pub(crate) fn room_id(field: Field<IdText>) -> Result<String, ApiError> {
    let IdText(id) = field.required("roomId", "a non-empty string or an integer")?;
    if id.chars().count() > MAX_ROOM_ID_CHARS {
        return Err(ApiError::bad_request(format!(
            "`roomId` is longer than {MAX_ROOM_ID_CHARS} characters"
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    struct Probe {
        room_id: Field<IdText>,
        is_typing: Field<bool>,
    }

    fn probe(text: &str) -> Result<Probe, ApiError> {
        parse(&RawValue::from_string(text.to_owned()).unwrap())
    }

    #[test]
    fn fields_are_absent_null_invalid_or_given() {
        let p = probe(r#"{"roomId": 7, "isTyping": "yes"}"#).unwrap();
        assert!(matches!(p.room_id, Field::Given(IdText(ref id)) if id == "7"));
        assert!(matches!(p.is_typing, Field::Invalid));
        let p = probe(r#"{"roomId": null}"#).unwrap();
        assert!(matches!(p.room_id, Field::Null));
        assert!(matches!(p.is_typing, Field::Absent));
        assert!(matches!(
            probe(r#"{"roomId": 1.5}"#).unwrap().room_id,
            Field::Invalid
        ));
        assert!(matches!(
            probe(r#"{"roomId": " "}"#).unwrap().room_id,
            Field::Invalid
        ));
    }

    #[test]
    fn the_last_duplicate_key_wins() {
        let p = probe(r#"{"roomId": "a", "roomId": "b"}"#).unwrap();
        assert!(matches!(p.room_id, Field::Given(IdText(ref id)) if id == "b"));
    }

    #[test]
    fn only_objects_are_payloads() {
        for bad in ["[]", "\"r1\"", "3", "null"] {
            assert!(probe(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn room_ids_name_what_is_wrong() {
        let message = |f: Field<IdText>| match room_id(f) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(message(Field::Absent), "`roomId` is required");
        assert_eq!(
            message(Field::Null),
            "`roomId` must be a non-empty string or an integer"
        );
        assert!(message(Field::Given(IdText("x".repeat(201)))).contains("longer than 200"));
        assert_eq!(room_id(Field::Given(IdText("r".into()))).unwrap(), "r");
    }
}
