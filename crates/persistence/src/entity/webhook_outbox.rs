use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub event_id: String,
    pub target: String,
    pub entity_key: String,
    pub body: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_ms: i64,
    pub lease_until_ms: i64,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
