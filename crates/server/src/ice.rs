//! ICE servers for `RTCPeerConnection` (CONTRACT §9): the configured STUN
//! URLs, and TURN URLs with credentials in coturn's REST-API scheme
//! (`use-auth-secret`): the username is `<expiry unix seconds>:<user id>`
//! and the password `base64(HMAC-SHA1(secret, username))`, so coturn checks
//! them without asking consultd, and they stop working at the expiry.

use base64::Engine;
use consultd_domain::UserId;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;

use crate::config::MediaConfig;

/// `{ iceServers, ttl }`, as `GET /api/ice-servers` answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServers {
    pub ice_servers: Vec<IceServer>,
    /// Seconds the TURN credentials stay valid.
    pub ttl: u64,
}

/// One `RTCIceServer`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the configuration says, read once at start.
#[derive(Clone)]
pub struct IceSettings {
    stun: Vec<String>,
    turn: Vec<String>,
    secret: Option<String>,
    ttl: u64,
}

impl std::fmt::Debug for IceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("IceSettings")
            .field("stun", &self.stun)
            .field("turn", &self.turn)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl IceSettings {
    pub fn new(config: &MediaConfig) -> Self {
        Self {
            stun: MediaConfig::urls(&config.stun_urls),
            turn: MediaConfig::urls(&config.turn_urls),
            secret: config.turn_secret.clone().filter(|s| !s.is_empty()),
            ttl: config.turn_ttl,
        }
    }

    /// The servers for `user`, with TURN credentials valid until
    /// `now_unix + ttl`.
    pub fn for_user(&self, user: &UserId, now_unix: u64) -> IceServers {
        let mut ice_servers = Vec::new();
        if !self.stun.is_empty() {
            ice_servers.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.turn.is_empty(), &self.secret) {
            let username = format!("{}:{}", now_unix + self.ttl, user.as_str());
            ice_servers.push(IceServer {
                urls: self.turn.clone(),
                credential: Some(turn_password(secret, &username)),
                username: Some(username),
            });
        }
        IceServers {
            ice_servers,
            ttl: self.ttl,
        }
    }
}

/// coturn's REST-API password for `username`.
pub fn turn_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(stun: &[&str], turn: &[&str], secret: Option<&str>) -> IceSettings {
        IceSettings::new(&MediaConfig {
            stun_urls: stun.iter().map(|s| (*s).to_owned()).collect(),
            turn_urls: turn.iter().map(|s| (*s).to_owned()).collect(),
            turn_secret: secret.map(str::to_owned),
            turn_ttl: 600,
            ..MediaConfig::default()
        })
    }

    #[test]
    fn the_password_is_coturns_hmac_sha1() {
        // RFC 2202 test case 2 for HMAC-SHA1, in base64:
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        assert_eq!(
            turn_password("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn turn_entries_expire_after_the_ttl_and_name_the_user() {
        let user = UserId::new("doc-1").unwrap();
        let got = settings(&["stun:s:3478"], &["turn:t:3478"], Some("k")).for_user(&user, 1_000);
        assert_eq!(got.ttl, 600);
        assert_eq!(got.ice_servers.len(), 2);
        assert_eq!(got.ice_servers[0].urls, ["stun:s:3478"]);
        assert_eq!(got.ice_servers[0].username, None);
        let turn = &got.ice_servers[1];
        assert_eq!(turn.username.as_deref(), Some("1600:doc-1"));
        assert_eq!(turn.credential, Some(turn_password("k", "1600:doc-1")));
        let json = serde_json::to_value(&got).unwrap();
        assert!(json["iceServers"][0].get("credential").is_none());
        assert_eq!(json["iceServers"][1]["urls"][0], "turn:t:3478");
    }

    #[test]
    fn without_settings_the_answer_is_stun_only_or_empty() {
        let user = UserId::new("u").unwrap();
        assert!(
            settings(&[], &[], None)
                .for_user(&user, 1)
                .ice_servers
                .is_empty()
        );
        let stun_only = settings(&["stun:s"], &[], Some("k")).for_user(&user, 1);
        assert_eq!(stun_only.ice_servers.len(), 1);
        assert!(stun_only.ice_servers[0].credential.is_none());
        // Blank entries (a trailing comma) are not URLs.
        assert!(
            settings(&[" ", ""], &[], None)
                .for_user(&user, 1)
                .ice_servers
                .is_empty()
        );
    }
}
