//! The checkpoint coordinator (Flink's `CheckpointCoordinator`): when to trigger a checkpoint,
//! when one is complete, when one is aborted. Checkpoint n is triggered at the sources; each task
//! acknowledges it once its snapshot is taken; it completes when every task has acknowledged it
//! before the timeout, and then subsumes every older one still pending.
//!
//! A sans-IO state machine: the driver feeds it the time and the tasks' acknowledgements, and
//! carries out the [`Action`]s it returns (inject barriers, write the metadata, remove files).

use super::CheckpointId;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// When checkpoints are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// Time between two triggers.
    pub interval: Duration,
    /// A checkpoint not complete this long after its trigger is aborted.
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the trigger of the next; when not zero,
    /// one checkpoint at a time.
    pub min_pause: Duration,
    /// Most checkpoints pending at once.
    pub max_concurrent: u32,
}

/// Why a checkpoint was aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortReason {
    /// It was not complete within the timeout.
    Timeout,
    /// A task could not take its snapshot (the message says why).
    Declined(String),
    /// A newer checkpoint completed first.
    Subsumed,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Inject barrier n at every source.
    Trigger(CheckpointId),
    /// Every task acknowledged n: record it as complete, commit what waited for it.
    Complete(CheckpointId),
    /// Checkpoint n will not complete: tell the tasks, remove its files.
    Abort(CheckpointId, AbortReason),
}

#[derive(Debug)]
struct Pending {
    triggered: Instant,
    acked: Vec<bool>,
    /// Per task: it took its snapshot for this checkpoint (its acknowledgement follows once the
    /// snapshot is stored, even if the task finishes meanwhile).
    taken: Vec<bool>,
}

/// The coordinator of one job's checkpoints.
#[derive(Debug)]
pub struct Coordinator {
    schedule: Schedule,
    /// Per task: it has finished, and counts as acknowledging every checkpoint from then on.
    finished: Vec<bool>,
    /// Per task: it is a source, where barriers are injected.
    sources: Vec<bool>,
    pending: BTreeMap<CheckpointId, Pending>,
    next_id: CheckpointId,
    /// When the last checkpoint was triggered (or the job started).
    last_trigger: Instant,
    /// When the last checkpoint completed or was aborted.
    last_end: Option<Instant>,
    /// The pending checkpoints that are savepoints: a newer checkpoint does not subsume them.
    savepoints: std::collections::BTreeSet<CheckpointId>,
    /// No checkpoint is triggered on schedule (a swap is being prepared for the next id).
    held: bool,
}

impl Coordinator {
    /// A coordinator for the tasks of `sources` (per task: it is a source), starting at `now`;
    /// the first checkpoint gets id `first_id` (one past the checkpoint restored from, if any).
    pub fn new(
        schedule: Schedule,
        sources: Vec<bool>,
        first_id: CheckpointId,
        now: Instant,
    ) -> Self {
        Coordinator {
            schedule,
            finished: vec![false; sources.len()],
            sources,
            pending: BTreeMap::new(),
            next_id: first_id,
            last_trigger: now,
            last_end: None,
            savepoints: std::collections::BTreeSet::new(),
            held: false,
        }
    }

    /// Holds (or no longer holds) the schedule: while held, only a savepoint is triggered, so
    /// that it gets [`Coordinator::next_id`].
    pub fn hold(&mut self, held: bool) {
        self.held = held;
    }

    /// The id the next checkpoint triggered gets.
    pub fn next_id(&self) -> CheckpointId {
        self.next_id
    }

    /// When the next checkpoint may be triggered, pending ones permitting.
    fn next_trigger(&self) -> Instant {
        let mut at = self.last_trigger + self.schedule.interval;
        if let Some(end) = self.last_end {
            at = at.max(end + self.schedule.min_pause);
        }
        at
    }

    fn may_trigger(&self) -> bool {
        let limit = if self.schedule.min_pause.is_zero() {
            self.schedule.max_concurrent as usize
        } else {
            1
        };
        // Once every source has finished no barrier can be injected: a checkpoint would only
        // complete when every task has finished, that is when the job is over.
        let source_running = (self.sources.iter().zip(&self.finished)).any(|(&s, &f)| s && !f);
        // No checkpoint is triggered while a savepoint is pending: none could overtake its
        // barrier at a source, or complete before it.
        self.pending.len() < limit && source_running && self.savepoints.is_empty() && !self.held
    }

    /// When the driver should call [`Coordinator::poll`] next.
    pub fn next_wakeup(&self) -> Instant {
        let timeouts = self
            .pending
            .values()
            .map(|p| p.triggered + self.schedule.timeout);
        let trigger = self.may_trigger().then(|| self.next_trigger());
        timeouts
            .chain(trigger)
            .min()
            .unwrap_or_else(|| Instant::now() + self.schedule.interval)
    }

    /// Time has passed: aborts what timed out, triggers what is due.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let expired: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.triggered + self.schedule.timeout)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.pending.remove(&id);
            self.savepoints.remove(&id);
            self.last_end = Some(now);
            actions.push(Action::Abort(id, AbortReason::Timeout));
        }
        if self.may_trigger() && now >= self.next_trigger() {
            actions.extend(self.trigger(now));
        }
        actions
    }

    fn trigger(&mut self, now: Instant) -> Vec<Action> {
        let id = self.next_id;
        self.next_id += 1;
        self.last_trigger = now;
        self.pending.insert(
            id,
            Pending {
                triggered: now,
                acked: self.finished.clone(),
                taken: vec![false; self.finished.len()],
            },
        );
        let mut actions = vec![Action::Trigger(id)];
        // A job whose tasks have all finished but some: a trigger may complete at once.
        actions.extend(self.complete_if_acked(id, now));
        actions
    }

    /// A savepoint: a checkpoint triggered now, whatever the schedule and the checkpoints
    /// pending, that no newer checkpoint subsumes. Its id, and what to do; an error if no
    /// source runs any more (no barrier could be injected).
    pub fn savepoint(&mut self, now: Instant) -> Result<(CheckpointId, Vec<Action>), String> {
        let source_running = (self.sources.iter().zip(&self.finished)).any(|(&s, &f)| s && !f);
        if !source_running {
            return Err("every source has finished: no barrier can be injected".into());
        }
        let id = self.next_id;
        self.savepoints.insert(id);
        Ok((id, self.trigger(now)))
    }

    /// Task `task` took its snapshot for checkpoint `id`: its state at the barrier, which its
    /// acknowledgement will stand for, however long the snapshot takes to store.
    pub fn taken(&mut self, id: CheckpointId, task: usize) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.taken[task] = true;
        }
    }

    /// Task `task` acknowledged checkpoint `id` (its snapshot is stored).
    pub fn ack(&mut self, id: CheckpointId, task: usize, now: Instant) -> Vec<Action> {
        match self.pending.get_mut(&id) {
            Some(p) => p.acked[task] = true,
            // Aborted or subsumed meanwhile: nothing to do.
            None => return Vec::new(),
        }
        self.complete_if_acked(id, now)
    }

    /// Task `task` could not take its snapshot for checkpoint `id`.
    pub fn decline(&mut self, id: CheckpointId, why: String, now: Instant) -> Vec<Action> {
        if self.pending.remove(&id).is_none() {
            return Vec::new();
        }
        self.savepoints.remove(&id);
        self.last_end = Some(now);
        vec![Action::Abort(id, AbortReason::Declined(why))]
    }

    /// Task `task` has finished: its last snapshot stands for every checkpoint from now on, and
    /// for those pending whose barrier it had not yet received (then every record it saw came
    /// before the barrier). A checkpoint it already took a snapshot for waits for that one: the
    /// state at its end holds records after the barrier.
    pub fn finished(&mut self, task: usize, now: Instant) -> Vec<Action> {
        self.finished[task] = true;
        let ids: Vec<CheckpointId> = self.pending.keys().copied().collect();
        let mut actions = Vec::new();
        for id in ids {
            if let Some(p) = self.pending.get_mut(&id)
                && !p.taken[task]
            {
                p.acked[task] = true;
            }
            actions.extend(self.complete_if_acked(id, now));
        }
        actions
    }

    fn complete_if_acked(&mut self, id: CheckpointId, now: Instant) -> Vec<Action> {
        if !self
            .pending
            .get(&id)
            .is_some_and(|p| p.acked.iter().all(|&a| a))
        {
            return Vec::new();
        }
        self.pending.remove(&id);
        self.savepoints.remove(&id);
        self.last_end = Some(now);
        let mut actions = vec![Action::Complete(id)];
        let older: Vec<CheckpointId> = self
            .pending
            .range(..id)
            .map(|(&o, _)| o)
            .filter(|o| !self.savepoints.contains(o))
            .collect();
        for o in older {
            self.pending.remove(&o);
            actions.push(Action::Abort(o, AbortReason::Subsumed));
        }
        actions
    }

    /// The checkpoints triggered and neither complete nor aborted.
    pub fn pending(&self) -> impl Iterator<Item = CheckpointId> + '_ {
        self.pending.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `n` tasks, the first a source.
    fn sources(n: usize) -> Vec<bool> {
        (0..n).map(|t| t == 0).collect()
    }

    fn schedule(interval: u32, timeout: u32, min_pause: u32, max_concurrent: u32) -> Schedule {
        Schedule {
            interval: interval * MS,
            timeout: timeout * MS,
            min_pause: min_pause * MS,
            max_concurrent,
        }
    }

    #[test]
    fn triggers_every_interval_and_completes_when_every_task_acked() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(schedule(100, 1000, 0, 1), sources(2), 1, t0);
        assert_eq!(c.poll(t0 + 50 * MS), []);
        assert_eq!(c.next_wakeup(), t0 + 100 * MS);
        assert_eq!(c.poll(t0 + 100 * MS), [Action::Trigger(1)]);
        // One at a time: the next is not triggered while 1 is pending.
        assert_eq!(c.poll(t0 + 250 * MS), []);
        assert_eq!(c.ack(1, 0, t0 + 260 * MS), []);
        assert_eq!(c.ack(1, 1, t0 + 270 * MS), [Action::Complete(1)]);
        // Overdue: triggered at once.
        assert_eq!(c.poll(t0 + 270 * MS), [Action::Trigger(2)]);
        // Acks of unknown checkpoints are ignored.
        assert_eq!(c.ack(7, 0, t0 + 280 * MS), []);
    }

    #[test]
    fn a_checkpoint_past_its_timeout_is_aborted() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(schedule(100, 300, 0, 1), sources(1), 1, t0);
        assert_eq!(c.poll(t0 + 100 * MS), [Action::Trigger(1)]);
        assert_eq!(c.next_wakeup(), t0 + 400 * MS);
        assert_eq!(
            c.poll(t0 + 400 * MS),
            [Action::Abort(1, AbortReason::Timeout), Action::Trigger(2)]
        );
        assert_eq!(c.ack(1, 0, t0 + 410 * MS), [], "too late");
    }

    #[test]
    fn min_pause_spaces_the_end_of_one_from_the_start_of_the_next() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(schedule(100, 10_000, 500, 3), sources(1), 1, t0);
        assert_eq!(c.poll(t0 + 100 * MS), [Action::Trigger(1)]);
        // min_pause > 0: one at a time, whatever max_concurrent says.
        assert_eq!(c.poll(t0 + 300 * MS), []);
        assert_eq!(c.ack(1, 0, t0 + 350 * MS), [Action::Complete(1)]);
        assert_eq!(c.poll(t0 + 800 * MS), []);
        assert_eq!(c.next_wakeup(), t0 + 850 * MS);
        assert_eq!(c.poll(t0 + 850 * MS), [Action::Trigger(2)]);
    }

    #[test]
    fn concurrent_checkpoints_and_subsumption() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(schedule(100, 10_000, 0, 2), sources(1), 5, t0);
        assert_eq!(c.poll(t0 + 100 * MS), [Action::Trigger(5)]);
        assert_eq!(c.poll(t0 + 200 * MS), [Action::Trigger(6)]);
        assert_eq!(c.poll(t0 + 300 * MS), [], "two pending at most");
        assert_eq!(
            c.ack(6, 0, t0 + 310 * MS),
            [Action::Complete(6), Action::Abort(5, AbortReason::Subsumed)]
        );
    }

    #[test]
    fn a_savepoint_is_triggered_at_once_and_never_subsumed() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(schedule(100, 10_000, 0, 1), sources(1), 1, t0);
        assert_eq!(c.poll(t0 + 100 * MS), [Action::Trigger(1)]);
        // Whatever the schedule and the checkpoints pending.
        let (id, actions) = c.savepoint(t0 + 110 * MS).unwrap();
        assert_eq!((id, actions), (2, vec![Action::Trigger(2)]));
        assert_eq!(c.ack(1, 0, t0 + 120 * MS), [Action::Complete(1)]);
        assert_eq!(
            c.poll(t0 + 220 * MS),
            [],
            "none while a savepoint is pending"
        );
        let (id, _) = c.savepoint(t0 + 230 * MS).unwrap();
        assert_eq!(id, 3);
        // Savepoint 3 completing first does not subsume savepoint 2.
        assert_eq!(c.ack(3, 0, t0 + 240 * MS), [Action::Complete(3)]);
        assert_eq!(c.ack(2, 0, t0 + 250 * MS), [Action::Complete(2)]);
        assert_eq!(c.poll(t0 + 1_000 * MS), [Action::Trigger(4)]);
        // Without a running source there is none.
        c.finished(0, t0 + 260 * MS);
        assert!(c.savepoint(t0 + 270 * MS).is_err());
    }

    #[test]
    fn a_declined_checkpoint_is_aborted_and_finished_tasks_count_as_acked() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(schedule(100, 10_000, 0, 1), sources(2), 1, t0);
        assert_eq!(c.poll(t0 + 100 * MS), [Action::Trigger(1)]);
        assert_eq!(
            c.decline(1, "disk full".into(), t0 + 110 * MS),
            [Action::Abort(1, AbortReason::Declined("disk full".into()))]
        );
        assert_eq!(c.poll(t0 + 200 * MS), [Action::Trigger(2)]);
        assert_eq!(c.ack(2, 0, t0 + 210 * MS), []);
        assert_eq!(c.finished(1, t0 + 220 * MS), [Action::Complete(2)]);
        assert_eq!(c.poll(t0 + 300 * MS), [Action::Trigger(3)]);
        assert_eq!(c.ack(3, 0, t0 + 310 * MS), [Action::Complete(3)]);
        // Once every task has finished, nothing more is triggered.
        assert_eq!(c.finished(0, t0 + 320 * MS), []);
        assert_eq!(c.poll(t0 + 10_000 * MS), []);
    }

    #[test]
    fn a_task_finishing_while_its_snapshot_is_stored_acks_only_when_it_is() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(schedule(100, 10_000, 0, 1), sources(2), 1, t0);
        assert_eq!(c.poll(t0 + 100 * MS), [Action::Trigger(1)]);
        assert_eq!(c.ack(1, 0, t0 + 110 * MS), []);
        // Task 1 took its snapshot of 1 at the barrier, then ran to its end before the snapshot
        // was stored: its end state holds records after the barrier, so its finishing does not
        // stand for 1.
        c.taken(1, 1);
        assert_eq!(c.finished(1, t0 + 120 * MS), []);
        assert_eq!(c.ack(1, 1, t0 + 130 * MS), [Action::Complete(1)]);
        // Later checkpoints it counts as acknowledged.
        assert_eq!(c.poll(t0 + 230 * MS), [Action::Trigger(2)]);
        assert_eq!(c.ack(2, 0, t0 + 240 * MS), [Action::Complete(2)]);
    }

    #[test]
    fn nothing_is_triggered_once_every_source_has_finished() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(schedule(100, 10_000, 0, 1), vec![true, false], 1, t0);
        assert_eq!(c.finished(0, t0 + 50 * MS), []);
        // Task 1 still runs, but no barrier could reach it.
        assert_eq!(c.poll(t0 + 100 * MS), []);
        assert_eq!(c.poll(t0 + 1_000 * MS), []);
    }
}
