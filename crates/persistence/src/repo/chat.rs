//! Chat sessions, their messages and read markers (CONTRACT §7).

use chrono::Duration;
use consultd_domain::{
    ChatDuration, ChatId, ChatSession, ChatStatus, Concern, Status, Timestamp, Transition,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TryInsertResult,
};

use super::{by_id, expect_one, oldest_page, parse_status, user};
use crate::RepoError;
use crate::entity::chat_message::{self, Column as Msg, Entity as Messages};
use crate::entity::chat_read_marker::{self, Column as Marker, Entity as Markers};
use crate::entity::chat_session::{self, Column, Entity};

#[derive(Debug, Clone, Copy, Default)]
pub struct ChatRepo;

impl TryFrom<chat_session::Model> for ChatSession {
    type Error = RepoError;

    fn try_from(m: chat_session::Model) -> Result<Self, RepoError> {
        let corrupt = |what: &str| RepoError::Corrupt(format!("chat session {} has {what}", m.id));
        let duration = ChatDuration::from_duration(Duration::milliseconds(m.duration_ms))
            .ok_or_else(|| corrupt("an unusable duration"))?;
        let concern = match m.concern.as_deref() {
            Some(raw) => Concern::parse(raw).map_err(|_| corrupt("an unusable concern"))?,
            None => None,
        };
        Ok(ChatSession {
            customer: user(m.customer_user_id)?,
            mechanic: m.mechanic_id.map(user).transpose()?,
            status: parse_status(&m.status)?,
            concern,
            duration,
            created_at: m.created_at,
            updated_at: m.updated_at,
            started_at: m.started_at,
            ends_at: m.ends_at,
            ended_at: m.ended_at,
            id: ChatId::new(m.id),
        })
    }
}

/// A stored chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: String,
    pub room_id: String,
    pub sender_id: String,
    /// The sender's token role (`customer`, `mechanic`, …).
    pub sender_role: String,
    pub content: String,
    pub client_message_id: Option<String>,
    pub created_at: Timestamp,
}

impl From<chat_message::Model> for ChatMessage {
    fn from(m: chat_message::Model) -> Self {
        Self {
            id: m.id,
            room_id: m.room_id,
            sender_id: m.sender_id,
            sender_role: m.sender_role,
            content: m.content,
            client_message_id: m.client_message_id,
            created_at: m.created_at,
        }
    }
}

/// Whose sessions to list.
#[derive(Debug, Clone, Copy)]
pub enum ChatScope<'a> {
    /// A customer's own.
    Customer(&'a str),
    /// A host's own, and every request still open to all hosts.
    Host(&'a str),
    /// Everyone's (admins).
    All,
}

fn duration_ms(s: &ChatSession) -> i64 {
    s.duration.get().num_milliseconds()
}

impl ChatRepo {
    pub async fn insert<C: ConnectionTrait>(
        &self,
        db: &C,
        s: &ChatSession,
    ) -> Result<(), RepoError> {
        let model = chat_session::ActiveModel {
            id: Set(s.id.as_str().to_owned()),
            customer_user_id: Set(s.customer.to_string()),
            mechanic_id: Set(s.mechanic.as_ref().map(ToString::to_string)),
            status: Set(s.status.as_str().to_owned()),
            concern: Set(s.concern.as_ref().map(|c| c.as_str().to_owned())),
            duration_ms: Set(duration_ms(s)),
            created_at: Set(s.created_at),
            updated_at: Set(s.updated_at),
            started_at: Set(s.started_at),
            ends_at: Set(s.ends_at),
            ended_at: Set(s.ended_at),
        };
        Entity::insert(model).exec_without_returning(db).await?;
        Ok(())
    }

    pub async fn find<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<ChatSession>, RepoError> {
        by_id::<Entity, _, _>(db, id, false).await
    }

    /// Reads and row-locks (PostgreSQL) a session inside a write transaction.
    pub async fn lock<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<ChatSession>, RepoError> {
        by_id::<Entity, _, _>(db, id, true).await
    }

    /// Compare-and-set of the status (and, for `pending → waiting`, that no
    /// host is assigned yet), with everything the move set.
    pub async fn apply<C: ConnectionTrait>(
        &self,
        db: &C,
        s: &ChatSession,
        t: Transition<ChatStatus>,
    ) -> Result<(), RepoError> {
        let mut q = Entity::update_many()
            .col_expr(Column::Status, Expr::value(t.to.as_str()))
            .col_expr(
                Column::MechanicId,
                Expr::value(s.mechanic.as_ref().map(ToString::to_string)),
            )
            .col_expr(Column::UpdatedAt, Expr::value(s.updated_at))
            .col_expr(Column::StartedAt, Expr::value(s.started_at))
            .col_expr(Column::EndsAt, Expr::value(s.ends_at))
            .col_expr(Column::EndedAt, Expr::value(s.ended_at))
            .filter(Column::Id.eq(s.id.as_str()))
            .filter(Column::Status.eq(t.from.as_str()));
        if t.from == ChatStatus::Pending {
            q = q.filter(Column::MechanicId.is_null());
        }
        expect_one(q.exec(db).await?.rows_affected)
    }

    /// Sessions newest first.
    pub async fn list<C: ConnectionTrait>(
        &self,
        db: &C,
        scope: ChatScope<'_>,
        status: Option<ChatStatus>,
        limit: u64,
    ) -> Result<Vec<ChatSession>, RepoError> {
        let mut q = Entity::find();
        match scope {
            ChatScope::Customer(me) => q = q.filter(Column::CustomerUserId.eq(me)),
            ChatScope::Host(me) => {
                q = q.filter(
                    Condition::any()
                        .add(Column::MechanicId.eq(me))
                        .add(Column::Status.eq(ChatStatus::Pending.as_str())),
                );
            }
            ChatScope::All => {}
        }
        if let Some(status) = status {
            q = q.filter(Column::Status.eq(status.as_str()));
        }
        q.order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(db)
            .await?
            .into_iter()
            .map(ChatSession::try_from)
            .collect()
    }

    /// The sessions a host has taken and that have not ended (what a
    /// reconnecting client must be told about), where the user is the
    /// customer (`as_mechanic == false`) or the assigned host.
    pub async fn in_progress_for<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
        as_mechanic: bool,
    ) -> Result<Vec<ChatSession>, RepoError> {
        let col = if as_mechanic {
            Column::MechanicId
        } else {
            Column::CustomerUserId
        };
        Entity::find()
            .filter(col.eq(user_id))
            .filter(Column::Status.is_in([ChatStatus::Waiting.as_str(), ChatStatus::Live.as_str()]))
            .order_by_asc(Column::CreatedAt)
            .limit(100)
            .all(db)
            .await?
            .into_iter()
            .map(ChatSession::try_from)
            .collect()
    }

    /// Every session in progress (`waiting`, `live`), for the connect
    /// resync's index at start.
    pub async fn in_progress<C: ConnectionTrait>(
        &self,
        db: &C,
    ) -> Result<Vec<ChatSession>, RepoError> {
        Entity::find()
            .filter(Column::Status.is_in([ChatStatus::Waiting.as_str(), ChatStatus::Live.as_str()]))
            .all(db)
            .await?
            .into_iter()
            .map(ChatSession::try_from)
            .collect()
    }

    /// The sessions not yet ended (`pending`, `waiting`, `live`) oldest
    /// first, at most `limit`, and how many there are in all: what the
    /// admin view lists.
    pub async fn open_page<C: ConnectionTrait>(
        &self,
        db: &C,
        limit: u64,
    ) -> Result<(Vec<ChatSession>, u64), RepoError> {
        let q = Entity::find().filter(Column::Status.ne(ChatStatus::Ended.as_str()));
        oldest_page(db, q, (Column::CreatedAt, Column::Id), limit).await
    }

    /// Every live session's end, for the timer's start.
    pub async fn deadlines<C: ConnectionTrait>(
        &self,
        db: &C,
    ) -> Result<Vec<(String, Timestamp)>, RepoError> {
        let rows: Vec<(String, Option<Timestamp>)> = Entity::find()
            .select_only()
            .column(Column::Id)
            .column(Column::EndsAt)
            .filter(Column::Status.eq(ChatStatus::Live.as_str()))
            .order_by_asc(Column::EndsAt)
            .into_tuple()
            .all(db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, at)| at.map(|at| (id, at)))
            .collect())
    }

    // ---- messages --------------------------------------------------------

    /// Stores a message unless the sender already stored one with the same
    /// client message id in this room; `false` means it was a resend.
    pub async fn insert_message<C: ConnectionTrait>(
        &self,
        db: &C,
        m: &ChatMessage,
    ) -> Result<bool, RepoError> {
        let model = chat_message::ActiveModel {
            id: Set(m.id.clone()),
            room_id: Set(m.room_id.clone()),
            sender_id: Set(m.sender_id.clone()),
            sender_role: Set(m.sender_role.clone()),
            content: Set(m.content.clone()),
            client_message_id: Set(m.client_message_id.clone()),
            created_at: Set(m.created_at),
        };
        // DO NOTHING rather than a unique violation: on PostgreSQL a failed
        // statement would poison the transaction the caller re-reads in.
        let res = Messages::insert(model)
            .on_conflict_do_nothing_on([Msg::RoomId, Msg::SenderId, Msg::ClientMessageId])
            .exec_without_returning(db)
            .await?;
        Ok(matches!(res, TryInsertResult::Inserted(n) if n > 0))
    }

    /// The message a sender stored with `client_message_id` in a room.
    pub async fn by_client_id<C: ConnectionTrait>(
        &self,
        db: &C,
        room_id: &str,
        sender_id: &str,
        client_message_id: &str,
    ) -> Result<Option<ChatMessage>, RepoError> {
        Ok(Messages::find()
            .filter(Msg::RoomId.eq(room_id))
            .filter(Msg::SenderId.eq(sender_id))
            .filter(Msg::ClientMessageId.eq(client_message_id))
            .one(db)
            .await?
            .map(ChatMessage::from))
    }

    /// A message of this room, by id.
    pub async fn message<C: ConnectionTrait>(
        &self,
        db: &C,
        room_id: &str,
        id: &str,
    ) -> Result<Option<ChatMessage>, RepoError> {
        Ok(Messages::find_by_id(id.to_owned())
            .filter(Msg::RoomId.eq(room_id))
            .one(db)
            .await?
            .map(ChatMessage::from))
    }

    /// The newest `limit` messages of a room before `before` (exclusive),
    /// oldest first. Order is (created_at, id): ids break ties within a
    /// millisecond.
    pub async fn page<C: ConnectionTrait>(
        &self,
        db: &C,
        room_id: &str,
        before: Option<&ChatMessage>,
        limit: u64,
    ) -> Result<Vec<ChatMessage>, RepoError> {
        let mut q = Messages::find().filter(Msg::RoomId.eq(room_id));
        if let Some(cursor) = before {
            q = q.filter(
                Condition::any()
                    .add(Msg::CreatedAt.lt(cursor.created_at))
                    .add(
                        Condition::all()
                            .add(Msg::CreatedAt.eq(cursor.created_at))
                            .add(Msg::Id.lt(cursor.id.as_str())),
                    ),
            );
        }
        let mut rows: Vec<ChatMessage> = q
            .order_by_desc(Msg::CreatedAt)
            .order_by_desc(Msg::Id)
            .limit(limit)
            .all(db)
            .await?
            .into_iter()
            .map(ChatMessage::from)
            .collect();
        rows.reverse();
        Ok(rows)
    }

    // ---- read markers ----------------------------------------------------

    /// The message a user has read up to in a room.
    pub async fn read_marker<C: ConnectionTrait>(
        &self,
        db: &C,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, RepoError> {
        Ok(
            Markers::find_by_id((room_id.to_owned(), user_id.to_owned()))
                .one(db)
                .await?
                .map(|m| m.message_id),
        )
    }

    /// Every participant's read marker in a room, by user id.
    pub async fn read_markers<C: ConnectionTrait>(
        &self,
        db: &C,
        room_id: &str,
    ) -> Result<Vec<(String, String)>, RepoError> {
        Ok(Markers::find()
            .filter(Marker::RoomId.eq(room_id))
            .all(db)
            .await?
            .into_iter()
            .map(|m| (m.user_id, m.message_id))
            .collect())
    }

    /// Sets a user's read marker in a room.
    pub async fn set_read_marker<C: ConnectionTrait>(
        &self,
        db: &C,
        room_id: &str,
        user_id: &str,
        message_id: &str,
        at: Timestamp,
    ) -> Result<(), RepoError> {
        let model = chat_read_marker::ActiveModel {
            room_id: Set(room_id.to_owned()),
            user_id: Set(user_id.to_owned()),
            message_id: Set(message_id.to_owned()),
            read_at: Set(at),
        };
        Markers::insert(model)
            .on_conflict(
                OnConflict::columns([Marker::RoomId, Marker::UserId])
                    .update_columns([Marker::MessageId, Marker::ReadAt])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        Ok(())
    }
}
