//! Identity from JWTs (CONTRACT §1): where a token is found, how it is
//! verified, and how `consultd token` mints one.

use std::time::{SystemTime, UNIX_EPOCH};

use consultd_domain::{Principal, RoleMap, UserId};
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::keys::Keys;

/// Why a token was refused. The `Display` form is the contract's word, sent
/// to clients as the `connect_error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, wrongly signed, `alg:none`, role-less or unknown role.
    #[error("unauthorized")]
    Unauthorized,
    /// Well signed but past `exp`: the client should refresh it.
    #[error("token_expired")]
    Expired,
}

/// Verifies tokens. Built once at start-up and shared.
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    algorithm: Algorithm,
    validation: Validation,
    role_claim: Vec<String>,
    roles: RoleMap,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm)
            .field("role_claim", &self.role_claim)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(keys: Keys, role_claim: &str, roles: RoleMap) -> Self {
        // Only the configured algorithm is accepted, which rules out `alg:none`
        // and HS/RS confusion; `exp` is mandatory and checked to the second.
        let mut validation = Validation::new(keys.algorithm);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            decoding: keys.decoding,
            encoding: keys.encoding,
            algorithm: keys.algorithm,
            validation,
            role_claim: role_claim.split('.').map(str::to_owned).collect(),
            roles,
        }
    }

    /// Verifies a token and reads the principal out of it.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_until(token).map(|(p, _)| p)
    }

    /// [`Authenticator::verify`], and the token's `exp` (Unix seconds): for
    /// what must end with the token, not with the connection.
    pub fn verify_until(&self, token: &str) -> Result<(Principal, i64), AuthError> {
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    _ => AuthError::Unauthorized,
                })?;
        let claims = data.claims;
        let user_id = claims
            .get("sub")
            .and_then(crate::input::id_text)
            .and_then(|sub| UserId::new(sub.trim()))
            .ok_or(AuthError::Unauthorized)?;
        let (first, rest) = self
            .role_claim
            .split_first()
            .ok_or(AuthError::Unauthorized)?;
        let role_name = rest
            .iter()
            .try_fold(claims.get(first), |v, key| {
                Ok::<_, ()>(v.and_then(|v| v.get(key)))
            })
            .ok()
            .flatten()
            .and_then(Value::as_str)
            .ok_or(AuthError::Unauthorized)?;
        let (role, class) = self
            .roles
            .resolve(role_name)
            .ok_or(AuthError::Unauthorized)?;
        let name = claims
            .get("name")
            .and_then(Value::as_str)
            .and_then(display_name);
        // Required by the validation, so present and numeric here.
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        Ok((
            Principal {
                user_id,
                role,
                class,
                name,
            },
            exp,
        ))
    }

    /// The class of a role name, `None` when the role mapping does not know it.
    pub fn role_class(&self, role: &str) -> Option<consultd_domain::RoleClass> {
        self.roles.resolve(role).map(|(_, class)| class)
    }

    /// Mints a token for `consultd token` and tests. The role goes at the
    /// configured claim path, so the server accepts what it mints.
    pub fn mint(
        &self,
        sub: &str,
        role: &str,
        name: Option<&str>,
        ttl_secs: u64,
    ) -> Result<String, MintError> {
        let key = self.encoding.as_ref().ok_or(MintError::NoSigningKey)?;
        if self.roles.resolve(role).is_none() {
            return Err(MintError::UnknownRole(role.to_owned()));
        }
        if sub.trim().is_empty() {
            return Err(MintError::EmptySubject);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(sub.to_owned()));
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + ttl_secs).into());
        if let Some(name) = name {
            claims.insert("name".into(), Value::String(name.to_owned()));
        }
        let mut role_value = Value::String(role.to_owned());
        let (first, nested) = self
            .role_claim
            .split_first()
            .ok_or(MintError::EmptySubject)?;
        for key in nested.iter().rev() {
            role_value = Value::Object(Map::from_iter([(key.clone(), role_value)]));
        }
        claims.insert(first.clone(), role_value);
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(MintError::Sign)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no signing key: RS256/ES256 tokens need JWT_PRIVATE_KEY")]
    NoSigningKey,
    #[error("role `{0}` is not in the role mapping")]
    UnknownRole(String),
    #[error("the subject must not be empty")]
    EmptySubject,
    #[error("signing failed: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// The token of a Socket.IO handshake, from the first non-empty source in
/// the contract's order: `auth.token`, then `?token=`, then
/// `Authorization: Bearer`. `Err` when a source is present but not a string.
pub fn handshake_token(
    auth: &Value,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<String>, AuthError> {
    match auth.get("token") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if let Some(t) = non_empty(strip_bearer(s)) {
                return Ok(Some(t));
            }
        }
        Some(_) => return Err(AuthError::Unauthorized),
    }
    if let Some(query) = query {
        let from_query = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "token")
            .and_then(|(_, v)| non_empty(strip_bearer(&v)));
        if from_query.is_some() {
            return Ok(from_query);
        }
    }
    Ok(bearer_token(headers))
}

/// The token of an `Authorization: Bearer …` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| non_empty(rest))?
}

fn strip_bearer(s: &str) -> &str {
    let t = s.trim();
    match t.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest,
        _ => t,
    }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// The longest display name kept (longer ones are cut).
const MAX_NAME_CHARS: usize = 200;

/// A display name as it is shown to the other party: trimmed, without
/// control characters, at most [`MAX_NAME_CHARS`]; `None` when nothing is left.
fn display_name(raw: &str) -> Option<String> {
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn auth_with(role_claim: &str) -> Authenticator {
        let config = Config {
            jwt_secret: Some("0123456789abcdef0123456789abcdef".into()),
            ..Config::default()
        };
        Authenticator::new(Keys::load(&config).unwrap(), role_claim, RoleMap::default())
    }

    fn sign(claims: Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn exp_in(secs: i64) -> i64 {
        chrono::Utc::now().timestamp() + secs
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn minted_tokens_verify_with_their_claims() {
        let a = auth_with("role");
        let t = a.mint("42", "doctor", Some("Dr Who"), 60).unwrap();
        let p = a.verify(&t).unwrap();
        assert_eq!(p.user_id.as_str(), "42");
        assert_eq!(p.role.as_str(), "doctor");
        assert!(p.is_host());
        assert_eq!(p.name.as_deref(), Some("Dr Who"));

        let nested = auth_with("user_metadata.role");
        let t = nested.mint("u-1", "patient", None, 60).unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&t)
            .unwrap()
            .claims;
        assert_eq!(claims["user_metadata"]["role"], "patient");
        assert!(nested.verify(&t).unwrap().is_guest());
        assert!(matches!(
            a.mint("1", "nurse", None, 60),
            Err(MintError::UnknownRole(_))
        ));
    }

    #[test]
    fn numeric_and_string_subjects_are_the_same_user() {
        let a = auth_with("role");
        let n = sign(
            json!({"sub": 42, "role": "patient", "exp": exp_in(60)}),
            SECRET,
        );
        let s = sign(
            json!({"sub": "42", "role": "patient", "exp": exp_in(60)}),
            SECRET,
        );
        assert_eq!(a.verify(&n).unwrap().user_id, a.verify(&s).unwrap().user_id);
    }

    #[test]
    fn unusable_subjects_are_refused_and_names_are_cleaned() {
        let a = auth_with("role");
        for sub in ["a\u{0}b", "line\nbreak", &"x".repeat(257)] {
            let t = sign(
                json!({"sub": sub, "role": "patient", "exp": exp_in(60)}),
                SECRET,
            );
            assert_eq!(a.verify(&t), Err(AuthError::Unauthorized), "{sub:?}");
        }
        let t = sign(
            json!({"sub": "7", "role": "doctor", "exp": exp_in(60), "name": " Dr\u{0} Who\u{7} "}),
            SECRET,
        );
        assert_eq!(a.verify(&t).unwrap().name.as_deref(), Some("Dr Who"));
        let long = sign(
            json!({"sub": "7", "role": "doctor", "exp": exp_in(60), "name": "n".repeat(500)}),
            SECRET,
        );
        assert_eq!(
            a.verify(&long).unwrap().name.unwrap().chars().count(),
            MAX_NAME_CHARS
        );
    }

    #[test]
    fn refusals_use_the_contract_words() {
        let a = auth_with("role");
        let cases = [
            ("garbage", "not.a.jwt".to_owned(), AuthError::Unauthorized),
            ("empty", String::new(), AuthError::Unauthorized),
            (
                "wrong key",
                sign(
                    json!({"sub": "1", "role": "doctor", "exp": exp_in(60)}),
                    "another-secret-another-secret-xx",
                ),
                AuthError::Unauthorized,
            ),
            (
                "expired",
                sign(
                    json!({"sub": "1", "role": "doctor", "exp": exp_in(-5)}),
                    SECRET,
                ),
                AuthError::Expired,
            ),
            (
                "no exp",
                sign(json!({"sub": "1", "role": "doctor"}), SECRET),
                AuthError::Unauthorized,
            ),
            (
                "no sub",
                sign(json!({"role": "doctor", "exp": exp_in(60)}), SECRET),
                AuthError::Unauthorized,
            ),
            (
                "empty sub",
                sign(
                    json!({"sub": "", "role": "doctor", "exp": exp_in(60)}),
                    SECRET,
                ),
                AuthError::Unauthorized,
            ),
            (
                "float sub",
                sign(
                    json!({"sub": 1.5, "role": "doctor", "exp": exp_in(60)}),
                    SECRET,
                ),
                AuthError::Unauthorized,
            ),
            (
                "object sub",
                sign(
                    json!({"sub": {"id": 1}, "role": "doctor", "exp": exp_in(60)}),
                    SECRET,
                ),
                AuthError::Unauthorized,
            ),
            (
                "no role",
                sign(json!({"sub": "1", "exp": exp_in(60)}), SECRET),
                AuthError::Unauthorized,
            ),
            (
                "unknown role",
                sign(
                    json!({"sub": "1", "role": "nurse", "exp": exp_in(60)}),
                    SECRET,
                ),
                AuthError::Unauthorized,
            ),
            (
                "role not a string",
                sign(
                    json!({"sub": "1", "role": ["doctor"], "exp": exp_in(60)}),
                    SECRET,
                ),
                AuthError::Unauthorized,
            ),
            (
                "not yet valid",
                sign(
                    json!({"sub": "1", "role": "doctor", "exp": exp_in(600), "nbf": exp_in(300)}),
                    SECRET,
                ),
                AuthError::Unauthorized,
            ),
            (
                "exp not a number",
                sign(
                    json!({"sub": "1", "role": "doctor", "exp": "tomorrow"}),
                    SECRET,
                ),
                AuthError::Unauthorized,
            ),
        ];
        for (what, token, want) in cases {
            assert_eq!(a.verify(&token).unwrap_err(), want, "{what}");
        }
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let a = auth_with("role");
        let b64 = |v: Value| {
            use std::fmt::Write;
            // base64url without padding, by hand to avoid a dependency for one test.
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let bytes = serde_json::to_vec(&v).unwrap();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..=chunk.len() {
                    let _ = write!(
                        out,
                        "{}",
                        ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char
                    );
                }
            }
            out
        };
        let claims = json!({"sub": "1", "role": "doctor", "exp": exp_in(60)});
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(claims.clone())
        );
        assert_eq!(a.verify(&none).unwrap_err(), AuthError::Unauthorized);
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(a.verify(&hs512).unwrap_err(), AuthError::Unauthorized);
    }

    #[test]
    fn handshake_sources_are_tried_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer from-header".parse().unwrap(),
        );
        let none = Value::Null;
        assert_eq!(
            handshake_token(
                &json!({"token": "from-auth"}),
                Some("token=from-query"),
                &headers
            ),
            Ok(Some("from-auth".into()))
        );
        assert_eq!(
            handshake_token(&json!({"token": ""}), Some("token=from-query"), &headers),
            Ok(Some("from-query".into()))
        );
        assert_eq!(
            handshake_token(
                &json!({}),
                Some("EIO=4&token=a%2Bb&transport=polling"),
                &headers
            ),
            Ok(Some("a+b".into()))
        );
        assert_eq!(
            handshake_token(&none, Some("EIO=3&token="), &headers),
            Ok(Some("from-header".into()))
        );
        assert_eq!(handshake_token(&none, None, &HeaderMap::new()), Ok(None));
        assert_eq!(
            handshake_token(&json!({"token": 12}), None, &headers),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            handshake_token(&json!({"token": "Bearer abc"}), None, &headers),
            Ok(Some("abc".into()))
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            http::header::AUTHORIZATION,
            "Basic Zm9vOmJhcg==".parse().unwrap(),
        );
        assert_eq!(bearer_token(&basic), None);
        let mut lower = HeaderMap::new();
        lower.insert(
            http::header::AUTHORIZATION,
            "bearer   tok ".parse().unwrap(),
        );
        assert_eq!(bearer_token(&lower), Some("tok".into()));
    }
}
