//! Who is acting: user ids, roles and the class a role belongs to.
//!
//! The token's role name (`doctor`) is what events carry; its class (`host`)
//! is what authorisation decides on. The mapping is configuration, so a
//! tutoring app can call its hosts `teacher` without a code change.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A user id, normalised to a string whatever the token carried (`sub: 42`
/// and `sub: "42"` are the same user).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// The longest id accepted; longer ones are not ids anyone issues.
    pub const MAX_LEN: usize = crate::ids::MAX_ID_LEN;

    /// Wraps an id. Empty, over-long and control-character ids are refused:
    /// they could never be addressed (and a NUL cannot even be stored).
    pub fn new(raw: impl Into<String>) -> Option<Self> {
        let raw = raw.into();
        crate::ids::usable_id(&raw).then_some(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Socket.IO room every socket of this user joins (CONTRACT §1).
    pub fn room(&self) -> String {
        format!("user:{}", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleClass {
    /// Doctors, teachers, mechanics: they own schedules and accept requests.
    Host,
    /// Patients, learners, customers: they queue, request and join.
    Guest,
    /// Reads every REST resource, joins no room.
    Admin,
}

impl RoleClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleClass::Host => "host",
            RoleClass::Guest => "guest",
            RoleClass::Admin => "admin",
        }
    }
}

/// A role name as the token spells it, known to the [`RoleMap`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Role(String);

impl Role {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleMapError {
    #[error("role `{0}` is mapped to more than one class")]
    Ambiguous(String),
    #[error("a role name must not be empty")]
    Empty,
}

/// Maps role names to classes. Matching is exact: `Doctor` is not `doctor`,
/// because a token issuer that changes case has changed its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMap {
    classes: BTreeMap<String, RoleClass>,
}

impl RoleMap {
    pub const DEFAULT_HOSTS: &'static [&'static str] = &["doctor", "teacher", "mechanic"];
    pub const DEFAULT_GUESTS: &'static [&'static str] = &["patient", "learner", "customer"];
    pub const DEFAULT_ADMINS: &'static [&'static str] = &["admin"];

    /// Builds a map from the three lists; a name in two lists is an error.
    pub fn new<S: AsRef<str>>(
        hosts: &[S],
        guests: &[S],
        admins: &[S],
    ) -> Result<Self, RoleMapError> {
        let mut classes = BTreeMap::new();
        let lists = [
            (hosts, RoleClass::Host),
            (guests, RoleClass::Guest),
            (admins, RoleClass::Admin),
        ];
        for (names, class) in lists {
            for name in names {
                let name = name.as_ref().trim();
                if name.is_empty() {
                    return Err(RoleMapError::Empty);
                }
                if classes
                    .insert(name.to_owned(), class)
                    .is_some_and(|c| c != class)
                {
                    return Err(RoleMapError::Ambiguous(name.to_owned()));
                }
            }
        }
        Ok(Self { classes })
    }

    /// The role and its class, or `None` for a role this deployment does not know.
    pub fn resolve(&self, name: &str) -> Option<(Role, RoleClass)> {
        self.classes
            .get(name)
            .map(|class| (Role(name.to_owned()), *class))
    }
}

impl Default for RoleMap {
    fn default() -> Self {
        // The default lists are disjoint constants.
        Self::new(
            Self::DEFAULT_HOSTS,
            Self::DEFAULT_GUESTS,
            Self::DEFAULT_ADMINS,
        )
        .unwrap_or_else(|_| unreachable!("default role lists are disjoint"))
    }
}

/// An authenticated user, as established once from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub role: Role,
    pub class: RoleClass,
    /// The token's optional `name` claim (a display name).
    pub name: Option<String>,
}

impl Principal {
    pub fn is_host(&self) -> bool {
        self.class == RoleClass::Host
    }

    pub fn is_guest(&self) -> bool {
        self.class == RoleClass::Guest
    }

    pub fn is_admin(&self) -> bool {
        self.class == RoleClass::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map_covers_the_contract_roles() {
        let map = RoleMap::default();
        for (name, class) in [
            ("doctor", RoleClass::Host),
            ("teacher", RoleClass::Host),
            ("mechanic", RoleClass::Host),
            ("patient", RoleClass::Guest),
            ("learner", RoleClass::Guest),
            ("customer", RoleClass::Guest),
            ("admin", RoleClass::Admin),
        ] {
            let (role, got) = map.resolve(name).expect(name);
            assert_eq!(role.as_str(), name);
            assert_eq!(got, class, "{name}");
        }
    }

    #[test]
    fn unknown_and_differently_cased_roles_are_not_resolved() {
        let map = RoleMap::default();
        for name in ["", "Doctor", "nurse", " doctor", "host", "guest"] {
            assert!(map.resolve(name).is_none(), "{name:?} must be unknown");
        }
    }

    #[test]
    fn a_role_in_two_classes_is_refused() {
        let err = RoleMap::new(&["doctor"], &["doctor"], &[]).unwrap_err();
        assert_eq!(err, RoleMapError::Ambiguous("doctor".into()));
        assert_eq!(
            RoleMap::new(&[""], &[], &[]).unwrap_err(),
            RoleMapError::Empty
        );
        // Listing a role twice in the same class is harmless.
        assert!(RoleMap::new(&["tutor", "tutor"], &["kid"], &[]).is_ok());
    }

    #[test]
    fn custom_map_replaces_the_defaults() {
        let map = RoleMap::new(&["tutor"], &["student"], &["ops"]).unwrap();
        assert_eq!(map.resolve("tutor").unwrap().1, RoleClass::Host);
        assert_eq!(map.resolve("student").unwrap().1, RoleClass::Guest);
        assert_eq!(map.resolve("ops").unwrap().1, RoleClass::Admin);
        assert!(map.resolve("doctor").is_none());
    }

    #[test]
    fn user_ids_are_non_empty_and_have_a_room() {
        assert!(UserId::new("").is_none());
        assert!(UserId::new("a\u{0}b").is_none());
        assert!(UserId::new("tab\there").is_none());
        assert!(UserId::new("x".repeat(UserId::MAX_LEN + 1)).is_none());
        assert!(UserId::new("x".repeat(UserId::MAX_LEN)).is_some());
        assert!(UserId::new("ünï cödé").is_some());
        let id = UserId::new("42").unwrap();
        assert_eq!(id.room(), "user:42");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"42\"");
    }
}
