//! One repository per aggregate. Repositories are stateless and take any
//! connection, so a service writes a transition, its follow-ups and their
//! audit rows in one transaction.
//!
//! Every state change is a compare-and-set: `UPDATE … WHERE id = ? AND
//! status = ?` (plus the entry's live call); zero rows is
//! [`RepoError::Conflict`](crate::RepoError::Conflict).

pub mod audit;
pub mod call;
pub mod queue;
pub mod schedule;

use consultd_domain::Status;

use crate::RepoError;

fn parse_status<S: Status>(raw: &str) -> Result<S, RepoError> {
    S::parse(raw).ok_or_else(|| RepoError::Corrupt(format!("unknown status `{raw}`")))
}

fn user(raw: String) -> Result<consultd_domain::UserId, RepoError> {
    consultd_domain::UserId::new(raw).ok_or_else(|| RepoError::Corrupt("empty user id".into()))
}

/// Zero rows from a compare-and-set means someone else moved first.
fn expect_one(rows: u64) -> Result<(), RepoError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(RepoError::Conflict)
    }
}
