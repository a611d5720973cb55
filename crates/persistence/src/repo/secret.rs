//! Secrets the server makes for itself (`server_secrets`), shared by every
//! node on the same database.

use consultd_domain::Timestamp;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

use crate::RepoError;
use crate::entity::server_secret::{self, Column, Entity};

#[derive(Debug, Clone, Copy, Default)]
pub struct SecretRepo;

impl SecretRepo {
    /// The secret called `name`: the stored one, or `fresh` stored now if
    /// there is none. Two nodes starting at once read the same winner.
    pub async fn get_or_create<C: ConnectionTrait>(
        &self,
        db: &C,
        name: &str,
        fresh: String,
        now: Timestamp,
    ) -> Result<String, RepoError> {
        let row = server_secret::ActiveModel {
            name: Set(name.to_owned()),
            value: Set(fresh),
            created_at: Set(now),
        };
        Entity::insert(row)
            .on_conflict(OnConflict::column(Column::Name).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        Entity::find_by_id(name.to_owned())
            .one(db)
            .await?
            .map(|m| m.value)
            .ok_or_else(|| RepoError::Corrupt(format!("secret `{name}` vanished after its insert")))
    }
}
