//! A live swap of one operator's component, as the coordinator drives it (sans-IO: fed the
//! workers' answers, the keeper's checkpoints and the parts' failures, it says what to do).
//!
//! 1. *Preparing*: the checkpoint schedule is held, so that the next checkpoint's id is known;
//!    every worker of the attempt fetches and compiles the new component and is told that the
//!    operator swaps at that checkpoint's barrier. One that cannot fails the swap (nothing
//!    happened to the job).
//! 2. *Triggered*: every worker is ready: that checkpoint is triggered (as a savepoint, which
//!    no other checkpoint overtakes). At its barrier each subtask of the operator takes its
//!    snapshot with the old component, then goes on with the new one from it.
//! 3. *Applied*: the checkpoint completed; it and every later one record the new component,
//!    and a restore uses it. The swap is on probation for [`PROBATION`], during which no
//!    checkpoint is triggered, and then until the next checkpoint completes: a failure of the
//!    operator meanwhile rolls it back, restoring the swap's checkpoint (its state as the old
//!    component left it) with the old component. Nothing the new component did has been
//!    committed then, so the output stays exactly-once.
//! 4. *Confirmed*: a checkpoint after the swap's completed.
//!
//! If the swap's checkpoint is aborted, or the job restarts before it completes, the tasks may
//! have swapped but nothing of it is durable: the job goes back to the old component from the
//! checkpoint before (an abort forces that restart; a restart does it anyway).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long the workers have to fetch and compile the new component.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a new component runs on probation after its swap's checkpoint: no checkpoint is
/// triggered meanwhile (nothing it emits is published yet), and a failure of the operator rolls
/// the swap back.
pub const PROBATION: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Preparing {
        waiting: BTreeSet<String>,
        deadline: Instant,
    },
    Triggered,
    /// On probation: checkpoints held until `until` (`None` once released), then the next
    /// one confirms it.
    Applied {
        until: Option<Instant>,
    },
}

/// What the coordinator does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Every worker is ready: trigger the swap's checkpoint.
    Trigger,
    /// The swap did not happen (nothing of it is durable), and why.
    Failed(String),
    /// The swap's checkpoint completed: the job runs the new component, on probation (hold
    /// the checkpoint schedule).
    Applied,
    /// The probation's time is over: release the schedule; the next checkpoint confirms it.
    Release,
    /// A checkpoint after it completed: the swap stays.
    Confirmed,
    /// Roll back: the job goes back to the old component from the swap's checkpoint (or the
    /// one before), and why.
    RollBack(String),
}

/// One live swap in flight.
#[derive(Debug, Clone)]
pub struct LiveSwap {
    pub request: String,
    pub operator: String,
    pub from: String,
    pub to: String,
    /// The checkpoint at whose barrier the operator swaps.
    pub checkpoint: u64,
    phase: Phase,
}

impl LiveSwap {
    /// A swap of `operator` from component `from` to `to` at checkpoint `checkpoint`, once the
    /// `workers` have it ready.
    pub fn new(
        request: String,
        operator: String,
        from: String,
        to: String,
        checkpoint: u64,
        workers: impl IntoIterator<Item = String>,
        now: Instant,
    ) -> Self {
        LiveSwap {
            request,
            operator,
            from,
            to,
            checkpoint,
            phase: Phase::Preparing {
                waiting: workers.into_iter().collect(),
                deadline: now + PREPARE_TIMEOUT,
            },
        }
    }

    /// The swap as the job's history shows it, now `status` (`why`, if it did not take).
    pub fn info(&self, status: &str, why: Option<String>) -> super::view::SwapInfo {
        let now = super::view::now_ms();
        super::view::SwapInfo {
            operator: self.operator.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            mode: "live".into(),
            status: status.into(),
            checkpoint: Some(self.checkpoint),
            why,
            started_ms: now,
            at_ms: now,
        }
    }

    /// Whether its checkpoint is still to come (no savepoint, stop or other swap may start).
    pub fn in_flight(&self) -> bool {
        !matches!(self.phase, Phase::Applied { .. })
    }

    /// Whether its checkpoint completed (the job's graph names the new component).
    pub fn applied(&self) -> bool {
        matches!(self.phase, Phase::Applied { .. })
    }

    /// When [`LiveSwap::poll`] is next due: preparing times out, or probation's time ends.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Preparing { deadline, .. } => Some(*deadline),
            Phase::Applied { until } => *until,
            Phase::Triggered => None,
        }
    }

    /// Worker `worker` has the component ready for checkpoint `checkpoint` (or cannot).
    pub fn prepared(&mut self, worker: &str, checkpoint: u64, error: Option<String>) -> Step {
        let Phase::Preparing { waiting, .. } = &mut self.phase else {
            return Step::Nothing;
        };
        if checkpoint != self.checkpoint || !waiting.remove(worker) {
            return Step::Nothing;
        }
        if let Some(why) = error {
            return Step::Failed(format!(
                "worker {worker} cannot run the new component: {why}"
            ));
        }
        if waiting.is_empty() {
            self.phase = Phase::Triggered;
            return Step::Trigger;
        }
        Step::Nothing
    }

    /// The time is `now`.
    pub fn poll(&mut self, now: Instant) -> Step {
        match &mut self.phase {
            Phase::Applied { until: Some(t) } if now >= *t => {
                self.phase = Phase::Applied { until: None };
                Step::Release
            }
            Phase::Preparing { waiting, deadline } if now >= *deadline => Step::Failed(format!(
                "worker(s) {} did not have the new component ready within {} s",
                waiting.iter().cloned().collect::<Vec<_>>().join(", "),
                PREPARE_TIMEOUT.as_secs()
            )),
            _ => Step::Nothing,
        }
    }

    /// Checkpoint `id` completed at `now`.
    pub fn completed(&mut self, id: u64, now: Instant) -> Step {
        match self.phase {
            Phase::Triggered if id == self.checkpoint => {
                self.phase = Phase::Applied {
                    until: Some(now + PROBATION),
                };
                Step::Applied
            }
            Phase::Applied { .. } if id > self.checkpoint => Step::Confirmed,
            _ => Step::Nothing,
        }
    }

    /// Checkpoint `id` was aborted.
    pub fn aborted(&mut self, id: u64) -> Step {
        match self.phase {
            Phase::Triggered if id == self.checkpoint => Step::RollBack(format!(
                "its checkpoint {id} was aborted, so the swap is not durable"
            )),
            _ => Step::Nothing,
        }
    }

    /// A part of the job failed (`why`, naming the node at fault).
    pub fn part_failed(&self, why: &str) -> Step {
        let ours = names_node(why, &self.operator);
        match self.phase {
            Phase::Triggered | Phase::Applied { .. } if ours => {
                Step::RollBack(format!("the new component failed in its first run: {why}"))
            }
            _ => Step::Nothing,
        }
    }

    /// The job restarts (for another reason than a rollback): a swap whose checkpoint did not
    /// complete is gone; an applied one goes on (from its checkpoint) on probation.
    pub fn restarted(&self) -> Step {
        match self.phase {
            Phase::Applied { .. } => Step::Nothing,
            _ => Step::Failed("the job restarted before the swap's checkpoint completed".into()),
        }
    }
}

/// Whether a task failure's message (``operator `uid` (subtask i of n) failed: ...``, as
/// `TaskFailure` says it) names node `uid`.
fn names_node(why: &str, uid: &str) -> bool {
    why.contains(&format!("`{uid}` (subtask "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swap(now: Instant) -> LiveSwap {
        LiveSwap::new(
            "swap-1".into(),
            "count".into(),
            "a".into(),
            "b".into(),
            7,
            ["w1".to_string(), "w2".to_string()],
            now,
        )
    }

    #[test]
    fn triggers_once_every_worker_is_ready_then_applies_and_confirms() {
        let t0 = Instant::now();
        let mut s = swap(t0);
        assert!(s.in_flight());
        assert_eq!(s.prepared("w1", 7, None), Step::Nothing);
        assert_eq!(s.prepared("w1", 7, None), Step::Nothing, "counted once");
        assert_eq!(
            s.prepared("w2", 6, None),
            Step::Nothing,
            "another checkpoint"
        );
        assert_eq!(s.prepared("w2", 7, None), Step::Trigger);
        assert_eq!(s.completed(6, t0), Step::Nothing, "an older checkpoint");
        assert_eq!(s.completed(7, t0), Step::Applied);
        assert!(s.applied() && !s.in_flight());
        assert_eq!(s.deadline(), Some(t0 + PROBATION));
        assert_eq!(s.poll(t0 + PROBATION / 2), Step::Nothing);
        assert_eq!(s.poll(t0 + PROBATION), Step::Release);
        assert_eq!(s.poll(t0 + PROBATION * 2), Step::Nothing, "released once");
        assert_eq!(s.completed(8, t0), Step::Confirmed);
    }

    #[test]
    fn a_worker_that_cannot_prepare_or_is_late_fails_it() {
        let t0 = Instant::now();
        let mut s = swap(t0);
        let Step::Failed(why) = s.prepared("w2", 7, Some("no".into())) else {
            panic!()
        };
        assert_eq!(why, "worker w2 cannot run the new component: no");
        let mut s = swap(t0);
        s.prepared("w1", 7, None);
        assert_eq!(s.poll(t0 + Duration::from_secs(1)), Step::Nothing);
        let Step::Failed(why) = s.poll(t0 + PREPARE_TIMEOUT) else {
            panic!()
        };
        assert!(why.starts_with("worker(s) w2 did not"), "{why}");
    }

    #[test]
    fn the_operator_failing_on_probation_rolls_back_and_others_do_not() {
        let t0 = Instant::now();
        let mut s = swap(t0);
        let theirs = "operator `split` (subtask 0 of 2) failed: boom";
        let ours = "operator `count` (subtask 1 of 2) failed: in process: trap";
        assert_eq!(s.part_failed(ours), Step::Nothing, "nothing swapped yet");
        s.prepared("w1", 7, None);
        s.prepared("w2", 7, None);
        assert!(matches!(s.part_failed(ours), Step::RollBack(_)));
        assert_eq!(s.part_failed(theirs), Step::Nothing);
        assert!(matches!(s.restarted(), Step::Failed(_)));
        assert!(matches!(s.aborted(7), Step::RollBack(_)));
        s.completed(7, t0);
        let Step::RollBack(why) = s.part_failed(ours) else {
            panic!()
        };
        assert!(why.ends_with(ours), "{why}");
        assert_eq!(s.restarted(), Step::Nothing, "applied: it goes on");
        assert_eq!(s.aborted(8), Step::Nothing);
    }
}
