use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "call_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub host_id: String,
    pub host_name: Option<String>,
    pub guest_id: String,
    pub guest_name: Option<String>,
    pub inviter: String,
    pub status: String,
    pub schedule_id: Option<String>,
    pub queue_entry_id: Option<String>,
    pub appointment_id: Option<String>,
    pub room_id: String,
    pub call_type: String,
    pub host_peer_id: Option<String>,
    pub guest_peer_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub confirmed_at: Option<DateTimeUtc>,
    pub ended_at: Option<DateTimeUtc>,
    pub kind: String,
    pub skill_name: Option<String>,
    pub end_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
