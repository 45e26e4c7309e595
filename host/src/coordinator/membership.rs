//! Which workers the coordinator has, and which it has lost: registrations and heartbeats, as a
//! sans-IO state machine. A worker is declared lost when no heartbeat came for `timeout` (it
//! died, hangs, or is cut off); its slots are gone until a worker registers again.

use super::scheduler::SlotOffer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub slots: u32,
    /// Where its data plane listens (other workers connect there).
    pub data_addr: String,
    /// Slots taken by the jobs running on it.
    pub used: u32,
    last_heartbeat: Instant,
}

/// Why a registration is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A live worker already has this id.
    DuplicateId(String),
    /// A worker offering no slot.
    NoSlots,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::DuplicateId(id) => write!(
                f,
                "a worker with id {id:?} is already registered and alive; give each worker its own \
                 data directory (its id lives there)"
            ),
            Refusal::NoSlots => write!(f, "a worker must offer at least one slot (--slots)"),
        }
    }
}

/// The coordinator's view of its workers.
#[derive(Debug)]
pub struct Membership {
    timeout: Duration,
    members: BTreeMap<String, Member>,
}

impl Membership {
    /// Workers are lost after `timeout` without a heartbeat.
    pub fn new(timeout: Duration) -> Self {
        Membership {
            timeout,
            members: BTreeMap::new(),
        }
    }

    /// Worker `id` registers with `slots` slots at `now`.
    pub fn register(
        &mut self,
        id: &str,
        slots: u32,
        data_addr: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        if slots == 0 {
            return Err(Refusal::NoSlots);
        }
        if self.members.contains_key(id) {
            return Err(Refusal::DuplicateId(id.to_string()));
        }
        self.members.insert(
            id.to_string(),
            Member {
                slots,
                data_addr: data_addr.to_string(),
                used: 0,
                last_heartbeat: now,
            },
        );
        Ok(())
    }

    /// A heartbeat from `id`; `false` if it is not (or no longer) a member: it must register
    /// again.
    pub fn heartbeat(&mut self, id: &str, now: Instant) -> bool {
        match self.members.get_mut(id) {
            Some(m) => {
                m.last_heartbeat = m.last_heartbeat.max(now);
                true
            }
            None => false,
        }
    }

    /// Worker `id` left (its connection closed cleanly, or it said so).
    pub fn remove(&mut self, id: &str) -> Option<Member> {
        self.members.remove(id)
    }

    /// The workers whose last heartbeat is `timeout` old at `now`: removed, and returned.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let lost: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_heartbeat) >= self.timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lost {
            self.members.remove(id);
        }
        lost
    }

    /// When [`Membership::expire`] may next find a lost worker.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.members
            .values()
            .map(|m| m.last_heartbeat + self.timeout)
            .min()
    }

    /// The members, by id.
    pub fn members(&self) -> impl Iterator<Item = (&str, &Member)> {
        self.members.iter().map(|(id, m)| (id.as_str(), m))
    }

    /// Every member's free slots, as offers to the scheduler (in id order).
    pub fn offers(&self) -> Vec<SlotOffer> {
        self.members
            .iter()
            .map(|(id, m)| SlotOffer {
                worker: id.clone(),
                free: m.slots.saturating_sub(m.used),
            })
            .collect()
    }

    /// A job takes `n` of worker `id`'s slots.
    pub fn take(&mut self, id: &str, n: u32) {
        if let Some(m) = self.members.get_mut(id) {
            m.used += n;
        }
    }

    /// A job gives back `n` of worker `id`'s slots (nothing if the worker is gone: its slots
    /// went with it).
    pub fn give(&mut self, id: &str, n: u32) {
        if let Some(m) = self.members.get_mut(id) {
            m.used = m.used.saturating_sub(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn workers_without_heartbeats_are_lost_after_the_timeout() {
        let t0 = Instant::now();
        let mut m = Membership::new(3 * S);
        m.register("a", 4, "127.0.0.1:1", t0).unwrap();
        m.register("b", 2, "127.0.0.1:2", t0).unwrap();
        assert_eq!(m.next_expiry(), Some(t0 + 3 * S));
        assert!(m.heartbeat("a", t0 + 2 * S));
        assert_eq!(m.expire(t0 + 2 * S), Vec::<String>::new());
        assert_eq!(m.expire(t0 + 3 * S), ["b"]);
        assert!(!m.heartbeat("b", t0 + 3 * S), "b must register again");
        assert_eq!(m.next_expiry(), Some(t0 + 5 * S));
        assert_eq!(
            m.offers(),
            [SlotOffer {
                worker: "a".into(),
                free: 4
            }]
        );
        // A heartbeat that arrives late (reordered) does not move the clock back.
        assert!(m.heartbeat("a", t0 + S));
        assert_eq!(m.expire(t0 + 4 * S + S / 2), Vec::<String>::new());
        assert_eq!(m.expire(t0 + 5 * S), ["a"]);
        assert_eq!(m.next_expiry(), None);
    }

    #[test]
    fn a_duplicate_id_or_no_slots_is_refused() {
        let t0 = Instant::now();
        let mut m = Membership::new(3 * S);
        m.register("a", 4, "x", t0).unwrap();
        let e = m.register("a", 4, "y", t0).unwrap_err();
        assert_eq!(e, Refusal::DuplicateId("a".into()));
        assert!(e.to_string().contains("already registered"));
        assert_eq!(m.register("c", 0, "z", t0), Err(Refusal::NoSlots));
        // Once lost, the id may register again (a restarted worker).
        m.expire(t0 + 3 * S);
        m.register("a", 8, "y", t0 + 3 * S).unwrap();
        assert_eq!(m.members().next().unwrap().1.slots, 8);
        // Slots taken by jobs are not offered until given back.
        m.take("a", 3);
        assert_eq!(m.offers()[0].free, 5);
        m.give("a", 3);
        m.give("gone", 3);
        assert_eq!(m.offers()[0].free, 8);
        assert!(m.remove("a").is_some());
    }
}
