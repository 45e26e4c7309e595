//! Barrier alignment at a task's input: which channels may be read while a checkpoint's barriers
//! arrive, and when the task has seen barrier n on every channel (Flink's
//! `CheckpointBarrierHandler`).
//!
//! In `exactly_once` mode a channel that delivered barrier n is blocked until every other channel
//! has delivered it too, so that the snapshot taken then reflects exactly the records before
//! barrier n on every channel. Blocked channels keep their data queued under their credit: the
//! sender runs out of credit and waits, so alignment never buffers without bound. In
//! `at_least_once` mode nothing is blocked: barriers are only counted, and records after barrier
//! n on a fast channel may be reflected in checkpoint n (and replayed after a restore).
//!
//! A sans-IO state machine: fed barriers and ends of partition per channel, it answers with what
//! the gate does next. No clock, no threads.

use super::{CheckpointId, Mode};

/// What the gate does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aligned {
    /// Keep reading (the channel may have been blocked: see [`Aligner::is_blocked`]).
    Wait,
    /// Every live channel has delivered barrier n: snapshot, forward it, read on (all channels
    /// are unblocked).
    Complete(CheckpointId),
    /// Checkpoint n can no longer complete here (a newer barrier overtook it): decline it; the
    /// newer one has started aligning.
    Abandoned(CheckpointId),
}

/// The alignment state of one input gate.
#[derive(Debug)]
pub struct Aligner {
    mode: Mode,
    /// Per channel: it delivered the pending barrier (blocked in exactly-once mode).
    received: Vec<bool>,
    /// Per channel: it has ended and will deliver no more barriers.
    ended: Vec<bool>,
    /// The checkpoint being aligned, if any.
    pending: Option<CheckpointId>,
    /// The newest checkpoint completed or abandoned here; older barriers are stale.
    last: CheckpointId,
}

impl Aligner {
    pub fn new(mode: Mode, channels: usize) -> Self {
        Aligner {
            mode,
            received: vec![false; channels],
            ended: vec![false; channels],
            pending: None,
            last: 0,
        }
    }

    /// Whether `channel` may not be read now (it delivered the barrier being aligned).
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.mode == Mode::ExactlyOnce && self.received[channel]
    }

    /// The checkpoint being aligned, if any.
    pub fn pending(&self) -> Option<CheckpointId> {
        self.pending
    }

    /// Barrier `id` arrived on `channel`.
    pub fn barrier(&mut self, channel: usize, id: CheckpointId) -> Aligned {
        if id <= self.last {
            // A barrier of a checkpoint already completed or abandoned here.
            return Aligned::Wait;
        }
        let mut outcome = Aligned::Wait;
        match self.pending {
            Some(p) if p == id => {}
            Some(p) if p > id => return Aligned::Wait,
            Some(p) => {
                // A newer checkpoint overtook the one aligning: it cannot complete here.
                self.reset(p);
                outcome = Aligned::Abandoned(p);
            }
            None => {}
        }
        self.pending = Some(id);
        self.received[channel] = true;
        match self.check() {
            Aligned::Wait => outcome,
            done => done,
        }
    }

    /// `channel` delivered its end of partition: it will not deliver the barrier being aligned,
    /// and stops counting for later ones.
    pub fn end_of_partition(&mut self, channel: usize) -> Aligned {
        self.ended[channel] = true;
        self.check()
    }

    /// The coordinator aborted checkpoint `id`: stop aligning it, unblock its channels.
    pub fn abort(&mut self, id: CheckpointId) {
        if self.pending == Some(id) {
            self.reset(id);
        } else if self.pending.is_none() && id > self.last {
            // Its barriers may still come: they are stale now.
            self.last = id;
        }
    }

    /// Completes the pending checkpoint if every live channel has delivered its barrier.
    fn check(&mut self) -> Aligned {
        let Some(id) = self.pending else {
            return Aligned::Wait;
        };
        if self
            .received
            .iter()
            .zip(&self.ended)
            .all(|(&got, &ended)| got || ended)
        {
            self.reset(id);
            return Aligned::Complete(id);
        }
        Aligned::Wait
    }

    fn reset(&mut self, id: CheckpointId) {
        self.last = self.last.max(id);
        self.pending = None;
        self.received.iter_mut().for_each(|r| *r = false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_blocks_each_channel_until_all_delivered_the_barrier() {
        let mut a = Aligner::new(Mode::ExactlyOnce, 3);
        assert_eq!(a.barrier(1, 1), Aligned::Wait);
        assert!(a.is_blocked(1) && !a.is_blocked(0) && !a.is_blocked(2));
        assert_eq!(a.barrier(0, 1), Aligned::Wait);
        assert!(a.is_blocked(0));
        assert_eq!(a.barrier(2, 1), Aligned::Complete(1));
        assert!((0..3).all(|c| !a.is_blocked(c)), "completion unblocks all");
        // A late duplicate of barrier 1 changes nothing.
        assert_eq!(a.barrier(0, 1), Aligned::Wait);
        assert!(!a.is_blocked(0));
    }

    #[test]
    fn at_least_once_counts_barriers_without_blocking() {
        let mut a = Aligner::new(Mode::AtLeastOnce, 2);
        assert_eq!(a.barrier(0, 4), Aligned::Wait);
        assert!(!a.is_blocked(0));
        assert_eq!(a.barrier(1, 4), Aligned::Complete(4));
    }

    #[test]
    fn an_ended_channel_no_longer_holds_alignment_back() {
        let mut a = Aligner::new(Mode::ExactlyOnce, 2);
        assert_eq!(a.barrier(0, 1), Aligned::Wait);
        assert_eq!(a.end_of_partition(1), Aligned::Complete(1));
        // From now on one channel is enough.
        assert_eq!(a.barrier(0, 2), Aligned::Complete(2));
    }

    #[test]
    fn a_newer_barrier_abandons_the_alignment_it_overtakes() {
        let mut a = Aligner::new(Mode::ExactlyOnce, 2);
        assert_eq!(a.barrier(0, 1), Aligned::Wait);
        assert_eq!(a.barrier(1, 2), Aligned::Abandoned(1));
        assert!(a.is_blocked(1) && !a.is_blocked(0));
        assert_eq!(a.pending(), Some(2));
        // The overtaken barrier, arriving late on channel 1's peer, is stale.
        assert_eq!(a.barrier(0, 2), Aligned::Complete(2));
        assert_eq!(a.barrier(1, 1), Aligned::Wait);
    }

    #[test]
    fn an_aborted_checkpoint_unblocks_and_its_late_barriers_are_ignored() {
        let mut a = Aligner::new(Mode::ExactlyOnce, 2);
        assert_eq!(a.barrier(0, 3), Aligned::Wait);
        a.abort(3);
        assert!(!a.is_blocked(0));
        assert_eq!(a.barrier(1, 3), Aligned::Wait);
        assert_eq!(a.pending(), None);
        // Aborting one not yet seen makes its barriers stale too.
        a.abort(4);
        assert_eq!(a.barrier(0, 4), Aligned::Wait);
        assert_eq!(a.barrier(1, 4), Aligned::Wait);
        assert_eq!(a.pending(), None);
        assert_eq!(a.barrier(0, 5), Aligned::Wait);
        assert_eq!(a.barrier(1, 5), Aligned::Complete(5));
    }
}
