//! A cluster job's lifecycle as the coordinator sees it: its attempts, the workers whose parts
//! of the current attempt have not ended, and what a part's end, a lost worker or a
//! cancellation leads to. Sans-IO: fed events, it returns the actions the coordinator carries
//! out (cancel the other parts, restart after a delay under the job's restart strategy, end the
//! job), as the local runner decides for one process.

use crate::checkpoint::RestartStrategy;
use crate::net::control::PartOutcome;
use std::collections::BTreeSet;
use std::time::Duration;

/// What the coordinator does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Cancel these workers' parts of the current attempt.
    Cancel { workers: Vec<String>, why: String },
    /// Every part of the failed attempt has ended: deploy the next one after `delay`.
    Restart {
        attempt: u32,
        delay: Duration,
        cause: String,
    },
    /// The job is over.
    End(Outcome),
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// Stopped by the user once a savepoint was taken (the message says which).
    Stopped(String),
    Failed(String),
    Cancelled(String),
}

/// Why the parts of an attempt are being stopped on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The user cancels the job.
    Cancel(String),
    /// The user stops the job, a savepoint taken.
    Stop(String),
    /// The job is deployed again (rescaled), from a savepoint: not a failure.
    Redeploy(String),
}

#[derive(Debug)]
enum Phase {
    /// Parts of the current attempt are running (or stopping) on these workers.
    Running {
        waiting: BTreeSet<String>,
        /// The attempt's first failure: the others' ends are then only waited for.
        failure: Option<String>,
    },
    /// Between attempts (the restart delay, or waiting for slots).
    Between,
    Ended,
}

/// One job's attempts.
#[derive(Debug)]
pub struct JobRun {
    restart: RestartStrategy,
    attempt: u32,
    /// Why each failed attempt failed.
    failures: Vec<String>,
    /// Set once the job is being cancelled, stopped or redeployed.
    ending: Option<Ending>,
    phase: Phase,
}

impl JobRun {
    pub fn new(restart: RestartStrategy) -> Self {
        JobRun {
            restart,
            attempt: 0,
            failures: Vec::new(),
            ending: None,
            phase: Phase::Between,
        }
    }

    /// A job resumed at attempt `attempt` (its coordinator restarted): earlier attempts'
    /// failures are not known, and do not count against the restart strategy.
    pub fn resume(restart: RestartStrategy, attempt: u32) -> Self {
        JobRun {
            attempt,
            ..JobRun::new(restart)
        }
    }

    /// The current attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the job has ended.
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// The current attempt was deployed on `workers`.
    pub fn deployed(&mut self, workers: impl IntoIterator<Item = String>) {
        self.phase = Phase::Running {
            waiting: workers.into_iter().collect(),
            failure: None,
        };
    }

    /// The current attempt could not be deployed (no slots for it, say): it failed.
    pub fn deploy_failed(&mut self, why: String) -> Vec<Action> {
        self.phase = Phase::Running {
            waiting: BTreeSet::new(),
            failure: Some(why),
        };
        self.settle()
    }

    /// Worker `worker`'s part of attempt `attempt` ended.
    pub fn part_ended(&mut self, attempt: u32, worker: &str, outcome: PartOutcome) -> Vec<Action> {
        if attempt != self.attempt {
            return Vec::new();
        }
        let why = match outcome {
            PartOutcome::Failed { why } => Some(why),
            PartOutcome::Finished | PartOutcome::Cancelled => None,
        };
        self.ended(worker, why)
    }

    /// Worker `worker` was lost: its part failed, if it had one.
    pub fn worker_lost(&mut self, worker: &str) -> Vec<Action> {
        match &self.phase {
            Phase::Running { waiting, .. } if waiting.contains(worker) => self.ended(
                worker,
                Some(format!(
                    "worker {worker} was lost (no heartbeat, or its connection closed)"
                )),
            ),
            _ => Vec::new(),
        }
    }

    /// The user cancels the job (a stop or a redeployment under way becomes a cancellation).
    pub fn cancel(&mut self, why: String) -> Vec<Action> {
        if matches!(self.ending, Some(Ending::Cancel(_))) || self.is_ended() {
            return Vec::new();
        }
        self.end_parts(Ending::Cancel(why))
    }

    /// The user stops the job, a savepoint (`why` says which) taken: its parts are cancelled,
    /// and it ends as stopped.
    pub fn stop(&mut self, why: String) -> Vec<Action> {
        if self.ending.is_some() || self.is_ended() {
            return Vec::new();
        }
        self.end_parts(Ending::Stop(why))
    }

    /// The job is to be deployed again (rescaled from a savepoint): its parts are cancelled,
    /// then it restarts at once, which counts as no failure.
    pub fn redeploy(&mut self, why: String) -> Vec<Action> {
        if self.ending.is_some() || self.is_ended() {
            return Vec::new();
        }
        self.end_parts(Ending::Redeploy(why))
    }

    fn end_parts(&mut self, ending: Ending) -> Vec<Action> {
        let why = match &ending {
            Ending::Cancel(why) | Ending::Stop(why) | Ending::Redeploy(why) => why.clone(),
        };
        self.ending = Some(ending);
        match &self.phase {
            Phase::Running { waiting, .. } if !waiting.is_empty() => vec![Action::Cancel {
                workers: waiting.iter().cloned().collect(),
                why,
            }],
            _ => self.settle(),
        }
    }

    fn ended(&mut self, worker: &str, failed: Option<String>) -> Vec<Action> {
        let Phase::Running { waiting, failure } = &mut self.phase else {
            return Vec::new();
        };
        if !waiting.remove(worker) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if let Some(why) = failed
            && failure.is_none()
            && self.ending.is_none()
        {
            *failure = Some(why.clone());
            if !waiting.is_empty() {
                actions.push(Action::Cancel {
                    workers: waiting.iter().cloned().collect(),
                    why: format!("another part of the job failed: {why}"),
                });
            }
        }
        actions.extend(self.settle());
        actions
    }

    /// Once no part of the attempt runs: the job's end, or its next attempt.
    fn settle(&mut self) -> Vec<Action> {
        let failure = match &mut self.phase {
            Phase::Running { waiting, failure } if waiting.is_empty() => failure.take(),
            Phase::Between => None,
            _ => return Vec::new(),
        };
        match self.ending.take() {
            Some(Ending::Cancel(why)) => {
                self.ending = Some(Ending::Cancel(why.clone()));
                self.phase = Phase::Ended;
                return vec![Action::End(Outcome::Cancelled(why))];
            }
            Some(Ending::Stop(why)) => {
                self.phase = Phase::Ended;
                return vec![Action::End(Outcome::Stopped(why))];
            }
            Some(Ending::Redeploy(why)) => {
                self.attempt += 1;
                self.phase = Phase::Between;
                return vec![Action::Restart {
                    attempt: self.attempt,
                    delay: Duration::ZERO,
                    cause: why,
                }];
            }
            None => {}
        }
        let Some(why) = failure else {
            if matches!(self.phase, Phase::Between) {
                return Vec::new();
            }
            self.phase = Phase::Ended;
            return vec![Action::End(Outcome::Finished)];
        };
        self.failures.push(why.clone());
        match self.restart.delay(self.failures.len() as u32) {
            Some(delay) => {
                self.attempt += 1;
                self.phase = Phase::Between;
                vec![Action::Restart {
                    attempt: self.attempt,
                    delay,
                    cause: why,
                }]
            }
            None => {
                self.phase = Phase::Ended;
                let why = match self.failures.len() {
                    1 => why,
                    n => format!(
                        "the job failed {n} times and has no restart attempt left (restart.attempts): {}",
                        self.failures
                            .iter()
                            .enumerate()
                            .map(|(i, f)| format!("attempt {}: {f}", i + 1))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                };
                vec![Action::End(Outcome::Failed(why))]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn failed(why: &str) -> PartOutcome {
        PartOutcome::Failed { why: why.into() }
    }

    #[test]
    fn a_job_ends_when_every_part_has_finished() {
        let mut run = JobRun::new(RestartStrategy::None);
        run.deployed(workers(&["a", "b"]));
        assert_eq!(run.part_ended(0, "a", PartOutcome::Finished), vec![]);
        // A part of another attempt, or of a worker without one, changes nothing.
        assert_eq!(run.part_ended(3, "b", PartOutcome::Finished), vec![]);
        assert_eq!(run.part_ended(0, "c", PartOutcome::Finished), vec![]);
        assert_eq!(
            run.part_ended(0, "b", PartOutcome::Finished),
            vec![Action::End(Outcome::Finished)]
        );
        assert!(run.is_ended());
    }

    #[test]
    fn a_failed_part_cancels_the_others_then_the_job_restarts_until_attempts_run_out() {
        let delay = Duration::from_millis(10);
        let mut run = JobRun::new(RestartStrategy::FixedDelay { attempts: 1, delay });
        run.deployed(workers(&["a", "b", "c"]));
        assert_eq!(
            run.part_ended(0, "b", failed("boom")),
            vec![Action::Cancel {
                workers: workers(&["a", "c"]),
                why: "another part of the job failed: boom".into()
            }]
        );
        // The cancelled parts end as cancelled, or fail too: the first cause stands.
        assert_eq!(run.part_ended(0, "a", failed("channel broke")), vec![]);
        assert_eq!(
            run.part_ended(0, "c", PartOutcome::Cancelled),
            vec![Action::Restart {
                attempt: 1,
                delay,
                cause: "boom".into()
            }]
        );
        assert_eq!(run.attempt(), 1);
        run.deployed(workers(&["a", "c"]));
        let lost = run.worker_lost("c");
        assert_eq!(
            lost,
            vec![Action::Cancel {
                workers: workers(&["a"]),
                why: "another part of the job failed: worker c was lost (no heartbeat, or its connection closed)".into()
            }]
        );
        let end = run.part_ended(1, "a", PartOutcome::Cancelled);
        let [Action::End(Outcome::Failed(why))] = &end[..] else {
            panic!("{end:?}")
        };
        assert!(why.starts_with("the job failed 2 times"), "{why}");
        assert!(
            why.contains("attempt 1: boom; attempt 2: worker c was lost"),
            "{why}"
        );
    }

    #[test]
    fn a_cancelled_job_ends_once_its_parts_have_stopped() {
        let mut run = JobRun::new(RestartStrategy::FixedDelay {
            attempts: 5,
            delay: Duration::ZERO,
        });
        run.deployed(workers(&["a", "b"]));
        assert_eq!(
            run.cancel("Ctrl-C".into()),
            vec![Action::Cancel {
                workers: workers(&["a", "b"]),
                why: "Ctrl-C".into()
            }]
        );
        assert_eq!(run.cancel("again".into()), vec![]);
        // A part failing while cancelled is no reason to restart.
        assert_eq!(
            run.part_ended(0, "a", failed("cancelled mid-write")),
            vec![]
        );
        assert_eq!(
            run.worker_lost("b"),
            vec![Action::End(Outcome::Cancelled("Ctrl-C".into()))]
        );
        // Between attempts, a cancellation ends the job at once.
        let mut run = JobRun::new(RestartStrategy::FixedDelay {
            attempts: 5,
            delay: Duration::ZERO,
        });
        run.deployed(workers(&["a"]));
        assert!(matches!(
            run.part_ended(0, "a", failed("x"))[..],
            [Action::Restart { .. }]
        ));
        assert_eq!(
            run.cancel("stop".into()),
            vec![Action::End(Outcome::Cancelled("stop".into()))]
        );
    }

    #[test]
    fn an_attempt_that_cannot_be_deployed_counts_as_failed() {
        let mut run = JobRun::new(RestartStrategy::FixedDelay {
            attempts: 1,
            delay: Duration::ZERO,
        });
        run.deployed(workers(&["a"]));
        run.worker_lost("a");
        let end = run.deploy_failed("the job needs 4 slots, but 2 are free".into());
        let [Action::End(Outcome::Failed(why))] = &end[..] else {
            panic!("{end:?}")
        };
        assert!(why.contains("attempt 2: the job needs 4 slots"), "{why}");
    }

    #[test]
    fn a_stop_ends_the_job_once_its_parts_have_ended_and_a_redeployment_restarts_it() {
        let mut run = JobRun::new(RestartStrategy::None);
        run.deployed(workers(&["a", "b"]));
        assert_eq!(
            run.redeploy("rescaled".into()),
            vec![Action::Cancel {
                workers: workers(&["a", "b"]),
                why: "rescaled".into()
            }]
        );
        // A second request while one is under way changes nothing.
        assert_eq!(run.stop("x".into()), vec![]);
        assert_eq!(run.part_ended(0, "a", PartOutcome::Cancelled), vec![]);
        // Not a failure, whatever the restart strategy (none here).
        assert_eq!(
            run.part_ended(0, "b", failed("cancelled mid-write")),
            vec![Action::Restart {
                attempt: 1,
                delay: Duration::ZERO,
                cause: "rescaled".into()
            }]
        );
        run.deployed(workers(&["a"]));
        assert_eq!(
            run.stop("savepoint sp-1".into()),
            vec![Action::Cancel {
                workers: workers(&["a"]),
                why: "savepoint sp-1".into()
            }]
        );
        assert_eq!(
            run.part_ended(1, "a", PartOutcome::Cancelled),
            vec![Action::End(Outcome::Stopped("savepoint sp-1".into()))]
        );
        assert!(run.is_ended());
    }
}
