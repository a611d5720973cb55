//! PeerJS tickets (`POST /api/peerjs/ticket`): short-lived tokens that stand
//! for the user's JWT in the broker's websocket URL, where PeerJS puts its
//! `token` and where proxies and browsers may log it. A ticket is a JWT
//! signed with a key of the server's own, made once and kept in the
//! database so that every node accepts every node's tickets. No other key
//! verifies it, so a ticket opens a broker connection and nothing else.

use consultd_domain::{Principal, RoleMap, Timestamp};
use consultd_persistence::{Db, RepoError, SecretRepo};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::auth::{AuthError, Authenticator, MintError};
use crate::keys::{KeySource, Keys};

const SECRET_NAME: &str = "peerjs_ticket_key";

pub struct Tickets {
    signer: Authenticator,
    ttl_secs: u64,
}

/// What `POST /api/peerjs/ticket` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub token: String,
    /// Seconds it may still open a connection.
    pub ttl: u64,
}

impl Tickets {
    /// Reads the signing key, making it if this is the first start.
    pub async fn load(
        db: &Db,
        roles: RoleMap,
        ttl_secs: u64,
        now: Timestamp,
    ) -> Result<Self, RepoError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| RepoError::Corrupt(format!("no randomness for the ticket key: {e}")))?;
        let fresh: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let secret = SecretRepo
            .get_or_create(db.conn(), SECRET_NAME, fresh, now)
            .await?;
        let keys = Keys {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: Some(EncodingKey::from_secret(secret.as_bytes())),
            source: KeySource::Configured,
        };
        Ok(Self {
            signer: Authenticator::new(keys, "role", roles),
            ttl_secs,
        })
    }

    /// A ticket for `p`.
    pub fn mint(&self, p: &Principal) -> Result<Ticket, MintError> {
        let token = self.signer.mint(
            p.user_id.as_str(),
            p.role.as_str(),
            p.name.as_deref(),
            self.ttl_secs,
        )?;
        Ok(Ticket {
            token,
            ttl: self.ttl_secs,
        })
    }

    /// The user a ticket was minted for, while it is valid.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.signer.verify(token)
    }
}

#[cfg(test)]
mod tests {
    use consultd_domain::RoleMap;
    use consultd_persistence::testing::TestDatabase;

    use super::*;

    fn roles() -> RoleMap {
        RoleMap::new(
            &["doctor".to_owned()],
            &["patient".to_owned()],
            &["admin".to_owned()],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_ticket_is_its_user_on_every_node_and_signed_with_the_shared_key_only() {
        let tdb = TestDatabase::sqlite();
        let db = Db::connect(&tdb.url).await.unwrap();
        db.migrate_up().await.unwrap();
        let now = chrono::Utc::now();
        let here = Tickets::load(&db, roles(), 60, now).await.unwrap();
        let there = Tickets::load(&db, roles(), 60, now).await.unwrap();
        let p = Principal {
            user_id: consultd_domain::UserId::new("pat-1").unwrap(),
            role: roles().resolve("patient").unwrap().0,
            class: consultd_domain::RoleClass::Guest,
            name: Some("Pat".into()),
        };
        let ticket = here.mint(&p).unwrap();
        assert_eq!(ticket.ttl, 60);
        // Another node (the same database) accepts it as the same user.
        assert_eq!(there.verify(&ticket.token).unwrap(), p);
        // A token signed with any other key is not a ticket.
        let other = TestDatabase::sqlite();
        let other_db = Db::connect(&other.url).await.unwrap();
        other_db.migrate_up().await.unwrap();
        let elsewhere = Tickets::load(&other_db, roles(), 60, now).await.unwrap();
        assert!(matches!(
            elsewhere.verify(&ticket.token),
            Err(AuthError::Unauthorized)
        ));
        assert!(matches!(
            here.verify("garbage"),
            Err(AuthError::Unauthorized)
        ));
    }
}
