//! What the coordinator knows of each job, as the HTTP API shows it: its state, its vertices
//! (chains) with their parallelism, where each subtask runs and its figures, its checkpoints,
//! savepoints, restarts and their causes. A job's run keeps its view up to date; a view is a
//! plain value, fed the job's events, and never waits for anything.

use crate::net::control::TaskFigures;
use crate::plan::{ExecutionGraph, JobGraph};
use crate::state::checkpoints::Summary;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The checkpoints, failures and log lines a view keeps (the newest).
const KEEP_CHECKPOINTS: usize = 64;
const KEEP_FAILURES: usize = 16;
const KEEP_LOG_LINES: usize = 1000;
const KEEP_ENDED_LOG_LINES: usize = 100;

/// A guest's line as the coordinator keeps it: numbered, with the worker it came from.
#[derive(Debug, Clone, Serialize)]
pub struct KeptLine {
    pub seq: u64,
    pub worker: String,
    #[serde(flatten)]
    pub line: crate::wasm::guest_log::LogLine,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Its current attempt is deployed.
    Running,
    /// Between attempts: a restart's delay, or waiting for slots.
    Restarting,
    /// Taking a savepoint before it stops (`stop`) or is redeployed (`rescale`).
    Stopping,
    Finished,
    Failed,
    Cancelled,
}

impl Status {
    /// Whether the job has ended.
    pub fn is_ended(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Cancelled)
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub status: Status,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub submitted_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// The current attempt (0 for the first).
    pub attempt: u32,
    pub restarts: u32,
    pub max_parallelism: u32,
    /// Records read by the sources and written by the sinks in the current attempt.
    pub records_in: u64,
    pub records_out: u64,
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
    /// When the current attempt's sinks wrote their first record (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_output_ms: Option<u64>,
    pub vertices: Vec<Vertex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointInfo>,
    pub checkpoints_completed: u64,
    /// The newest failures first is how a reader wants them; kept oldest first, newest last.
    pub failures: VecDeque<Failure>,
    pub savepoints: Vec<SavepointInfo>,
    /// What each operator (and source and window function) runs now, by uid: its component's
    /// content hash.
    pub components: BTreeMap<String, String>,
    /// Each such node's version: 1 for the component it was submitted with, one more for each
    /// swap that took.
    pub versions: BTreeMap<String, u32>,
    /// The swaps of the job's components, oldest first.
    pub swaps: Vec<SwapInfo>,
    #[serde(skip)]
    pub checkpoints: VecDeque<CheckpointInfo>,
    /// Guest lines dropped on their way (over a worker's queue, or past the lines kept).
    pub log_lines_dropped: u64,
    #[serde(skip)]
    logs: VecDeque<KeptLine>,
    #[serde(skip)]
    next_seq: u64,
    #[serde(skip)]
    sampled: Option<(Instant, u64, u64)>,
    #[serde(skip)]
    task_samples: HashMap<String, (Instant, TaskFigures)>,
}

/// A swap of an operator's component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SwapInfo {
    pub operator: String,
    pub from: String,
    pub to: String,
    /// `live` (at a checkpoint barrier) or `restart` (from a savepoint).
    pub mode: String,
    /// `preparing`, `swapping` (its checkpoint triggered), `applied` (its checkpoint complete,
    /// on probation until the next one), `confirmed`, `rolled_back` or `failed`.
    pub status: String,
    /// The checkpoint it happened at: a live swap's barrier, or the savepoint restarted from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    /// Why it was rolled back or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// When it was asked for and when it last changed (ms since the Unix epoch).
    pub started_ms: u64,
    pub at_ms: u64,
}

impl SwapInfo {
    /// Whether the operator runs the new component after it.
    pub fn took(&self) -> bool {
        matches!(self.status.as_str(), "applied" | "confirmed")
    }
}

/// A vertex: a chain of operators, and its subtasks.
#[derive(Debug, Clone, Serialize)]
pub struct Vertex {
    /// The uid of the chain's first node.
    pub uid: String,
    /// Every node of the chain, first to last.
    pub operators: Vec<String>,
    pub parallelism: u32,
    pub records_in: u64,
    pub records_out: u64,
    /// `ok`, `low` or `high`, as Flink: the largest share of time a subtask spent waiting to
    /// send (at most 10%, at most 50%, more).
    pub backpressure: &'static str,
    pub subtasks: Vec<Subtask>,
}

/// One subtask of a vertex: where it runs and its figures (per second: since the previous
/// report).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Subtask {
    pub subtask: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub records_in: u64,
    pub records_out: u64,
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
    pub busy_ms_per_second: f64,
    pub backpressured_ms_per_second: f64,
    pub idle_ms_per_second: f64,
}

/// A completed checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointInfo {
    pub id: u64,
    pub completed_ms: u64,
    pub duration_ms: u64,
    /// Bytes it wrote, and bytes a restore from it reads.
    pub bytes: u64,
    pub full_bytes: u64,
}

/// An attempt that failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub attempt: u32,
    pub at_ms: u64,
    pub cause: String,
}

/// A savepoint taken of the job.
#[derive(Debug, Clone, Serialize)]
pub struct SavepointInfo {
    pub id: u64,
    pub path: String,
    pub completed_ms: u64,
}

impl JobView {
    /// A job just submitted.
    pub fn new(id: &str, graph: &JobGraph) -> Self {
        let mut view = JobView {
            id: id.to_string(),
            name: graph.name.clone(),
            status: Status::Restarting,
            why: None,
            submitted_ms: now_ms(),
            ended_ms: None,
            attempt: 0,
            restarts: 0,
            max_parallelism: graph.max_parallelism,
            records_in: 0,
            records_out: 0,
            records_in_per_second: 0.0,
            records_out_per_second: 0.0,
            first_output_ms: None,
            vertices: Vec::new(),
            last_checkpoint: None,
            checkpoints_completed: 0,
            failures: VecDeque::new(),
            savepoints: Vec::new(),
            components: BTreeMap::new(),
            versions: BTreeMap::new(),
            swaps: Vec::new(),
            checkpoints: VecDeque::new(),
            log_lines_dropped: 0,
            logs: VecDeque::new(),
            next_seq: 1,
            sampled: None,
            task_samples: HashMap::new(),
        };
        view.set_graph(graph);
        view.set_swaps(&[]);
        view
    }

    /// The job's swaps (as the store keeps them): the newest one of its operator and
    /// checkpoint is replaced, or it is added. Versions follow.
    pub fn set_swaps(&mut self, swaps: &[SwapInfo]) {
        self.swaps = swaps.to_vec();
        self.versions = (self.components.keys())
            .map(|uid| {
                let took = swaps.iter().filter(|s| s.operator == *uid && s.took());
                (uid.clone(), 1 + took.count() as u32)
            })
            .collect();
    }

    /// The job's graph (again, after a rescale or a swap).
    pub fn set_graph(&mut self, graph: &JobGraph) {
        self.components = graph.components_by_uid();
        let exec = ExecutionGraph::build(graph);
        self.vertices = exec
            .chains
            .iter()
            .map(|c| Vertex {
                uid: graph.nodes[c.nodes[0]].uid.clone(),
                operators: c
                    .nodes
                    .iter()
                    .map(|&n| graph.nodes[n].uid.clone())
                    .collect(),
                parallelism: c.parallelism,
                records_in: 0,
                records_out: 0,
                backpressure: "ok",
                subtasks: (0..c.parallelism)
                    .map(|subtask| Subtask {
                        subtask,
                        ..Subtask::default()
                    })
                    .collect(),
            })
            .collect();
    }

    /// Attempt `attempt` was deployed; shared slot `k` runs on `slots[k]`.
    pub fn deployed(&mut self, attempt: u32, slots: &[String]) {
        self.status = Status::Running;
        self.attempt = attempt;
        self.records_in = 0;
        self.records_out = 0;
        self.first_output_ms = None;
        self.sampled = None;
        self.task_samples.clear();
        for v in &mut self.vertices {
            v.records_in = 0;
            v.records_out = 0;
            v.backpressure = "ok";
            for s in &mut v.subtasks {
                *s = Subtask {
                    subtask: s.subtask,
                    worker: slots.get(s.subtask as usize).cloned(),
                    ..Subtask::default()
                };
            }
        }
    }

    /// The current attempt has read `records_in` and written `records_out` records in all; its
    /// tasks on one worker report `tasks`.
    pub fn progress(
        &mut self,
        records_in: u64,
        records_out: u64,
        tasks: &[TaskFigures],
        now: Instant,
    ) {
        if let Some((then, i, o)) = self.sampled {
            let s = now.duration_since(then).as_secs_f64();
            if s >= 0.2 {
                self.records_in_per_second = records_in.saturating_sub(i) as f64 / s;
                self.records_out_per_second = records_out.saturating_sub(o) as f64 / s;
                self.sampled = Some((now, records_in, records_out));
            }
        } else {
            self.sampled = Some((now, records_in, records_out));
        }
        self.records_in = records_in;
        self.records_out = records_out;
        for t in tasks {
            let Some((uid, subtask)) = t.task.rsplit_once('-') else {
                continue;
            };
            let Ok(subtask) = subtask.parse::<u32>() else {
                continue;
            };
            let Some(v) = self.vertices.iter_mut().find(|v| v.uid == uid) else {
                continue;
            };
            let Some(s) = v.subtasks.get_mut(subtask as usize) else {
                continue;
            };
            s.records_in = t.records_in;
            s.records_out = t.records_out;
            if let Some((then, before)) = self.task_samples.get(&t.task) {
                let secs = now.duration_since(*then).as_secs_f64();
                if secs >= 0.2 {
                    let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
                    s.records_in_per_second = per_s(t.records_in, before.records_in);
                    s.records_out_per_second = per_s(t.records_out, before.records_out);
                    let ms = |a: u64, b: u64| per_s(a, b).min(1000.0);
                    s.busy_ms_per_second = ms(t.busy_ms, before.busy_ms);
                    s.backpressured_ms_per_second = ms(t.backpressured_ms, before.backpressured_ms);
                    s.idle_ms_per_second = ms(t.idle_ms, before.idle_ms);
                } else {
                    continue;
                }
            }
            self.task_samples.insert(t.task.clone(), (now, t.clone()));
        }
        for v in &mut self.vertices {
            v.records_in = v.subtasks.iter().map(|s| s.records_in).sum();
            v.records_out = v.subtasks.iter().map(|s| s.records_out).sum();
            let worst = v
                .subtasks
                .iter()
                .map(|s| s.backpressured_ms_per_second)
                .fold(0.0, f64::max);
            v.backpressure = if worst <= 100.0 {
                "ok"
            } else if worst <= 500.0 {
                "low"
            } else {
                "high"
            };
        }
    }

    /// Worker `worker` reports `lines` of the job's guests, and `dropped` it could not keep.
    pub fn logged(
        &mut self,
        worker: &str,
        lines: Vec<crate::wasm::guest_log::LogLine>,
        dropped: u64,
    ) {
        self.log_lines_dropped += dropped;
        for line in lines {
            if self.logs.len() == KEEP_LOG_LINES {
                self.logs.pop_front();
                self.log_lines_dropped += 1;
            }
            self.logs.push_back(KeptLine {
                seq: self.next_seq,
                worker: worker.to_string(),
                line,
            });
            self.next_seq += 1;
        }
    }

    /// Up to `limit` of the lines kept numbered after `since`, oldest first; and the number
    /// to ask after next time.
    pub fn logs_since(&self, since: u64, limit: usize) -> (Vec<KeptLine>, u64) {
        let lines: Vec<KeptLine> = self
            .logs
            .iter()
            .filter(|l| l.seq > since)
            .take(limit)
            .cloned()
            .collect();
        let next = lines.last().map_or(since, |l| l.seq);
        (lines, next)
    }

    /// A worker's sinks wrote their first record at `at` (ms since the Unix epoch), if they have.
    pub fn first_output(&mut self, at: Option<u64>) {
        if let Some(at) = at {
            self.first_output_ms = Some(self.first_output_ms.map_or(at, |f| f.min(at)));
        }
    }

    /// A checkpoint completed.
    pub fn checkpoint(&mut self, summary: &Summary) {
        let info = CheckpointInfo {
            id: summary.id,
            completed_ms: now_ms(),
            duration_ms: summary.duration.as_millis() as u64,
            bytes: summary.bytes,
            full_bytes: summary.full_bytes,
        };
        self.checkpoints_completed += 1;
        self.last_checkpoint = Some(info.clone());
        if self.checkpoints.len() == KEEP_CHECKPOINTS {
            self.checkpoints.pop_front();
        }
        self.checkpoints.push_back(info);
    }

    /// The current attempt failed with `cause`; the job restarts as attempt `next`.
    pub fn restarting(&mut self, next: u32, cause: &str) {
        if self.failures.len() == KEEP_FAILURES {
            self.failures.pop_front();
        }
        self.failures.push_back(Failure {
            attempt: self.attempt,
            at_ms: now_ms(),
            cause: cause.to_string(),
        });
        self.restarts += 1;
        self.attempt = next;
        self.status = Status::Restarting;
    }

    /// The job ended: of its lines, the newest [`KEEP_ENDED_LOG_LINES`] stay.
    pub fn ended(&mut self, status: Status, why: Option<String>) {
        while self.logs.len() > KEEP_ENDED_LOG_LINES {
            self.logs.pop_front();
        }
        self.status = status;
        self.why = why;
        self.ended_ms = Some(now_ms());
        self.records_in_per_second = 0.0;
        self.records_out_per_second = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn graph() -> JobGraph {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("job.toml");
        std::fs::write(
            &manifest,
            "edges = [\"s -> o\"]\n[job]\nname = \"j\"\nparallelism = 2\n[sources.s]\nkind = \"datagen\"\ncount = 1\n[sinks.o]\nkind = \"stdout\"\npartition = \"rebalance\"\n",
        )
        .unwrap();
        crate::manifest::load(&manifest, &[]).unwrap()
    }

    #[test]
    fn a_view_follows_placement_progress_and_failures() {
        let mut view = JobView::new("j-1", &graph());
        assert_eq!(view.vertices.len(), 2);
        view.deployed(0, &["w1".into(), "w2".into()]);
        assert_eq!(view.status, Status::Running);
        assert_eq!(view.vertices[0].subtasks[1].worker.as_deref(), Some("w2"));
        let t0 = Instant::now();
        let figures = |records: u64, bp: u64| TaskFigures {
            task: "s-1".into(),
            records_in: records,
            records_out: records,
            busy_ms: 0,
            backpressured_ms: bp,
            idle_ms: 0,
        };
        view.progress(10, 0, &[figures(10, 0)], t0);
        view.progress(1010, 0, &[figures(510, 800)], t0 + Duration::from_secs(1));
        assert_eq!(view.records_in, 1010);
        assert!((view.records_in_per_second - 1000.0).abs() < 1e-6);
        let s = &view.vertices[0].subtasks[1];
        assert!((s.records_out_per_second - 500.0).abs() < 1e-6);
        assert!((s.backpressured_ms_per_second - 800.0).abs() < 1e-6);
        assert_eq!(view.vertices[0].backpressure, "high");
        // Names of tasks the job does not have are ignored.
        view.progress(0, 0, &[TaskFigures::default()], t0);
        view.restarting(1, "a task failed");
        assert_eq!((view.restarts, view.attempt), (1, 1));
        assert_eq!(view.failures[0].attempt, 0);
        view.deployed(1, &["w1".into()]);
        assert_eq!(view.records_in, 0);
        assert_eq!(view.vertices[0].subtasks[1].worker, None);
        // Lines are numbered and bounded; an ended job keeps the newest hundred.
        let line = |n: u64| crate::wasm::guest_log::LogLine {
            at_ms: n,
            level: "info".into(),
            operator: "o".into(),
            subtask: 0,
            message: format!("line {n}"),
        };
        view.logged("w1", (0..1500).map(line).collect(), 2);
        let (lines, next) = view.logs_since(0, 10);
        assert_eq!((lines.len(), lines[0].seq, next), (10, 501, 510));
        assert_eq!(view.log_lines_dropped, 502);
        assert_eq!(view.logs_since(1500, 10).0.len(), 0);
        view.ended(Status::Finished, None);
        assert!(view.status.is_ended() && view.ended_ms.is_some());
        let (lines, _) = view.logs_since(0, 1000);
        assert_eq!(
            (lines.len(), lines[0].line.message.as_str()),
            (100, "line 1400")
        );
    }
}
