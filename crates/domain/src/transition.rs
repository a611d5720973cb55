//! What every state change reports: where it came from and where it went.
//! The service persists it as a compare-and-set on `from` plus an audit row.

/// One state change of one aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<S> {
    pub from: S,
    pub to: S,
}

impl<S: Copy + PartialEq> Transition<S> {
    pub fn new(from: S, to: S) -> Self {
        Self { from, to }
    }
}

/// A status that has a stable wire and storage spelling.
pub trait Status: Copy + Eq + std::fmt::Debug + 'static {
    /// Every status, for exhaustive tables.
    const ALL: &'static [Self];
    /// The spelling in payloads and in the database (`INVITED`).
    fn as_str(self) -> &'static str;
    /// The inverse of [`Status::as_str`].
    fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == raw)
    }
}
