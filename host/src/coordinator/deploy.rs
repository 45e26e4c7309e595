//! What each worker runs of a placed job: its tasks, and which of their channels stay in its
//! process and which cross to another worker (one QUIC connection per worker pair carries
//! those). Pure: fed the execution graph and the placement.

use super::scheduler::Placement;
use crate::plan::{ChannelSpec, ExecutionGraph, JobGraph};

/// One worker's part of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerPlan {
    /// The tasks it runs: (chain, subtask).
    pub tasks: Vec<(usize, u32)>,
    /// Channels between two of its own tasks.
    pub local: Vec<ChannelSpec>,
    /// Channels from its tasks to another worker's: with that worker (an offer index).
    pub remote_out: Vec<(ChannelSpec, usize)>,
    /// Channels from another worker's tasks to its own: with that worker.
    pub remote_in: Vec<(ChannelSpec, usize)>,
}

impl WorkerPlan {
    /// The workers it exchanges records with.
    pub fn peers(&self) -> Vec<usize> {
        let mut p: Vec<usize> = (self.remote_out.iter().chain(&self.remote_in))
            .map(|&(_, w)| w)
            .collect();
        p.sort_unstable();
        p.dedup();
        p
    }
}

/// Splits a placed job into one plan per offer (empty for a worker that runs nothing).
pub fn plan(job: &JobGraph, exec: &ExecutionGraph, placement: &Placement) -> Vec<WorkerPlan> {
    let mut plans = vec![WorkerPlan::default(); placement.per_worker.len()];
    for (c, chain) in exec.chains.iter().enumerate() {
        for s in 0..chain.parallelism {
            plans[placement.worker_of(s)].tasks.push((c, s));
        }
    }
    for ch in exec.channels(job) {
        let (from, to) = (placement.worker_of(ch.from.1), placement.worker_of(ch.to.1));
        if from == to {
            plans[from].local.push(ch);
        } else {
            plans[from].remote_out.push((ch, to));
            plans[to].remote_in.push((ch, from));
        }
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::scheduler::{SlotOffer, place, slots_needed};

    /// The word count's shape: source -> split (chained), hash -> count -> sink (chained).
    fn wordcount(parallelism: u32) -> JobGraph {
        let manifest = format!(
            r#"
edges = ["lines -> split", "split -> count", "count -> out"]
[job]
parallelism = {parallelism}
[sources.lines]
kind = "datagen"
count = 10
[operators.split]
component = "split.wasm"
[operators.count]
component = "count.wasm"
partition = "hash"
[sinks.out]
kind = "stdout"
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        // The manifest names components; planning never reads them.
        for c in ["split.wasm", "count.wasm"] {
            std::fs::write(dir.path().join(c), b"").unwrap();
        }
        std::fs::write(&path, manifest).unwrap();
        crate::manifest::load(&path, &[]).unwrap()
    }

    #[test]
    fn the_word_count_on_two_workers_crosses_half_its_shuffle() {
        let job = wordcount(4);
        let exec = ExecutionGraph::build(&job);
        let offers = [8, 8].map(|free| SlotOffer {
            worker: "w".into(),
            free,
        });
        let placement = place(slots_needed(&exec), &offers).unwrap();
        let plans = plan(&job, &exec, &placement);
        // Slot sharing: each worker runs two subtasks of each chain.
        for p in &plans {
            assert_eq!(p.tasks.len(), 4);
            assert_eq!(p.peers().len(), 1);
        }
        // 16 hash channels: a subtask sends to its own worker's two counts and the other's two.
        let all: usize = plans
            .iter()
            .map(|p| p.local.len() + p.remote_out.len())
            .sum();
        assert_eq!(all, 16);
        assert_eq!(plans[0].remote_out.len(), 4);
        assert_eq!(plans[0].remote_in.len(), 4);
        assert_eq!(plans[0].local.len(), 4);
        // Every channel is planned once: local on one worker, or out on one and in on the other.
        for (w, p) in plans.iter().enumerate() {
            for &(ch, peer) in &p.remote_out {
                assert!(plans[peer].remote_in.contains(&(ch, w)));
            }
        }
    }

    #[test]
    fn one_worker_keeps_every_channel_local() {
        let job = wordcount(3);
        let exec = ExecutionGraph::build(&job);
        let offers = [SlotOffer {
            worker: "w".into(),
            free: 4,
        }];
        let plans = plan(&job, &exec, &place(3, &offers).unwrap());
        assert_eq!(plans[0].local.len(), 9);
        assert!(plans[0].remote_out.is_empty() && plans[0].peers().is_empty());
    }
}
