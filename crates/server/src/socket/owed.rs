//! Who this node's connect resync must read the database for.
//!
//! Most connects have nothing to resync, and the three resync queries were
//! most of a connect's cost (they queue behind the pool in a reconnect
//! storm). Every state a resync re-sends begins with a push of the very
//! event it re-sends (`call_invitation` to the invitee, `session:incoming`
//! to the teacher, `session:status` to both chat participants), and every
//! node delivers every push (one node: in process; several: from the
//! bus). So the outbox marks the user here before it emits, and a connect
//! reads only the kinds its user is marked for.
//!
//! Why no push is missed: a socket joins its user room before the resync
//! reads the marks, and a push marks before it emits. Either the mark comes
//! first, and the resync's query (after it) sees the commit (before it); or
//! the emit comes after the read, and finds the socket in the room. Each is
//! told once whichever way it comes ([`super::told`]).
//!
//! A mark goes when a resync's query for its kind found nothing, unless the
//! user was marked again since that resync read the marks (a generation).
//! Until the marks are loaded from the database (at start) or reloaded
//! (after a bus gap, when pushes may have gone unheard), the index is
//! cold and every connect reads every kind.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use consultd_domain::{Principal, UserId};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::service::outbox::Owed;

/// A set of [`Owed`] kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Kinds(u8);

impl Kinds {
    pub(crate) const NONE: Self = Self(0);
    pub(crate) const ALL: Self = Self(0b1111);

    pub(crate) fn of(owed: Owed) -> Self {
        Self(match owed {
            Owed::Invitation => 1,
            Owed::TutoringRequest => 2,
            Owed::ChatAsCustomer => 4,
            Owed::ChatAsHost => 8,
        })
    }

    /// The kinds a resync for `p` reads: the invitation always, a chat on
    /// the side of `p`'s role (none for an admin), tutoring requests for a
    /// host.
    pub(crate) fn read_for(p: &Principal) -> Self {
        let mut kinds = Self::of(Owed::Invitation);
        if p.is_host() {
            kinds = kinds.with(Owed::ChatAsHost).with(Owed::TutoringRequest);
        } else if !p.is_admin() {
            kinds = kinds.with(Owed::ChatAsCustomer);
        }
        kinds
    }

    pub(crate) fn with(self, owed: Owed) -> Self {
        Self(self.0 | Self::of(owed).0)
    }

    pub(crate) fn has(self, owed: Owed) -> bool {
        self.0 & Self::of(owed).0 != 0
    }

    pub(crate) fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[derive(Debug)]
struct Mark {
    kinds: Kinds,
    /// The index's generation when last marked.
    generation: u64,
}

/// What a resync read from the index, for [`OwedIndex::found_nothing`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    pub(crate) kinds: Kinds,
    since: u64,
}

/// One cooling of the index, for the [`OwedIndex::warm`] that ends it.
#[derive(Debug, Clone, Copy)]
pub struct Cooling(u64);

#[derive(Debug, Default)]
pub struct OwedIndex {
    marks: DashMap<UserId, Mark>,
    generation: AtomicU64,
    warm: AtomicBool,
    /// How many times it was cooled: a load that began before the latest
    /// cooling cannot warm it.
    coolings: AtomicU64,
}

impl OwedIndex {
    /// Cold until the first [`OwedIndex::warm`].
    pub fn new() -> Self {
        Self::default()
    }

    /// `user` may be owed `owed` from now on. Before the push is emitted.
    pub fn mark(&self, user: &UserId, owed: Owed) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.marks
            .entry(user.clone())
            .and_modify(|m| {
                m.kinds = m.kinds.with(owed);
                m.generation = generation;
            })
            .or_insert(Mark {
                kinds: Kinds::of(owed),
                generation,
            });
    }

    /// What `user` may be owed now: everything while cold. After the
    /// socket joined its user room.
    pub(crate) fn read(&self, user: &UserId) -> Reading {
        let since = self.generation.load(Ordering::SeqCst);
        let kinds = if self.warm.load(Ordering::SeqCst) {
            self.marks.get(user).map_or(Kinds::NONE, |m| m.kinds)
        } else {
            Kinds::ALL
        };
        Reading { kinds, since }
    }

    /// Everything, whatever the marks say ([`super::resync_everyone`]).
    pub(crate) fn read_all(&self) -> Reading {
        Reading {
            kinds: Kinds::ALL,
            since: self.generation.load(Ordering::SeqCst),
        }
    }

    /// The resync that took `reading` found nothing of `kinds` for `user`
    /// in the database: unmarked, unless marked again since.
    pub(crate) fn found_nothing(&self, user: &UserId, reading: Reading, kinds: Kinds) {
        if kinds.is_empty() {
            return;
        }
        if let Entry::Occupied(mut mark) = self.marks.entry(user.clone()) {
            if mark.get().generation > reading.since {
                return;
            }
            let left = mark.get().kinds.without(kinds);
            if left.is_empty() {
                mark.remove();
            } else {
                mark.get_mut().kinds = left;
            }
        }
    }

    /// Pushes may have gone unheard (the bus listener lost its
    /// connection), or the marks were never loaded: every connect reads
    /// everything until the [`Self::warm`] of this cooling.
    pub fn cool(&self) -> Cooling {
        self.warm.store(false, Ordering::SeqCst);
        Cooling(self.coolings.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// The marks are complete again: `loaded` was read from the database
    /// after `cooling` (so after listening restarted), and is merged with
    /// the pushes marked meanwhile. Stays cold if cooled again since.
    pub fn warm(&self, cooling: Cooling, loaded: impl IntoIterator<Item = (UserId, Owed)>) {
        for (user, owed) in loaded {
            self.mark(&user, owed);
        }
        if self.coolings.load(Ordering::SeqCst) == cooling.0 {
            self.warm.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use consultd_domain::RoleMap;

    use super::*;

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    fn warm() -> OwedIndex {
        let index = OwedIndex::new();
        index.warm(index.cool(), []);
        index
    }

    #[test]
    fn cold_reads_everything_and_warm_reads_the_marks() {
        let index = OwedIndex::new();
        assert_eq!(index.read(&user("u")).kinds, Kinds::ALL);
        index.warm(index.cool(), [(user("u"), Owed::Invitation)]);
        assert!(index.read(&user("u")).kinds.has(Owed::Invitation));
        assert!(!index.read(&user("u")).kinds.has(Owed::ChatAsCustomer));
        assert_eq!(index.read(&user("v")).kinds, Kinds::NONE);
        index.cool();
        assert_eq!(index.read(&user("v")).kinds, Kinds::ALL);
    }

    #[test]
    fn a_load_from_before_the_latest_cooling_does_not_warm() {
        let index = OwedIndex::new();
        let first = index.cool();
        let second = index.cool();
        index.warm(first, [(user("u"), Owed::Invitation)]);
        assert_eq!(index.read(&user("v")).kinds, Kinds::ALL);
        index.warm(second, []);
        assert_eq!(index.read(&user("v")).kinds, Kinds::NONE);
        assert!(index.read(&user("u")).kinds.has(Owed::Invitation));
    }

    #[test]
    fn found_nothing_unmarks_only_what_was_read() {
        let index = warm();
        let u = user("u");
        index.mark(&u, Owed::Invitation);
        index.mark(&u, Owed::TutoringRequest);
        let reading = index.read(&u);
        index.found_nothing(&u, reading, Kinds::of(Owed::Invitation));
        let left = index.read(&u).kinds;
        assert!(!left.has(Owed::Invitation) && left.has(Owed::TutoringRequest));
        index.found_nothing(&u, reading, Kinds::of(Owed::TutoringRequest));
        assert!(index.marks.is_empty());
    }

    #[test]
    fn a_mark_after_the_reading_survives_its_empty_result() {
        let index = warm();
        let u = user("u");
        index.mark(&u, Owed::Invitation);
        let reading = index.read(&u);
        // The resync's query ran before this commit; the push marks again.
        index.mark(&u, Owed::Invitation);
        index.found_nothing(&u, reading, Kinds::ALL);
        assert!(index.read(&u).kinds.has(Owed::Invitation));
        // A later resync that finds nothing unmarks it.
        let later = index.read(&u);
        index.found_nothing(&u, later, Kinds::ALL);
        assert_eq!(index.read(&u).kinds, Kinds::NONE);
    }

    #[test]
    fn an_unmark_before_a_mark_of_the_same_user_keeps_the_mark() {
        let index = warm();
        let u = user("u");
        let reading = index.read(&u);
        index.found_nothing(&u, reading, Kinds::ALL);
        index.mark(&u, Owed::ChatAsHost);
        assert!(index.read(&u).kinds.has(Owed::ChatAsHost));
    }

    #[test]
    fn each_role_reads_its_own_side() {
        let of = |role: &str| {
            let (role, class) = RoleMap::default().resolve(role).unwrap();
            Principal {
                user_id: user("u"),
                role,
                class,
                name: None,
            }
        };
        let guest = Kinds::read_for(&of("patient"));
        assert!(guest.has(Owed::Invitation) && guest.has(Owed::ChatAsCustomer));
        assert!(!guest.has(Owed::ChatAsHost) && !guest.has(Owed::TutoringRequest));
        let host = Kinds::read_for(&of("teacher"));
        assert!(host.has(Owed::ChatAsHost) && host.has(Owed::TutoringRequest));
        assert!(!host.has(Owed::ChatAsCustomer));
        let admin = Kinds::read_for(&of("admin"));
        assert_eq!(admin, Kinds::of(Owed::Invitation));
    }
}
