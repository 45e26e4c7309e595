//! Where a job's subtasks run: slots on workers, with slot sharing and even spreading.
//!
//! Slot sharing as Flink's default slot sharing group: shared slot k holds subtask k of every
//! chain that has one, so a job needs as many slots as its largest parallelism, and a slot runs
//! a whole pipeline. The slots are spread over the workers as evenly as their free slots allow
//! (Flink's `cluster.evenly-spread-out-slots`, which was not the default and which seed 004's
//! migration missed): each next slot goes to the worker that holds the fewest of this job's
//! slots so far, among those with a free one. Slots are dealt in turn, so every chain's
//! subtasks are spread evenly too, not only the slots: a 12-subtask job on two 8-slot workers
//! gets 6 + 6, and a 4-subtask chain of the same job 2 + 2.
//!
//! Pure: fed the workers' free slots and the execution graph, it returns the placement.

use crate::plan::ExecutionGraph;
use std::fmt;

/// A worker's offer: its id and how many of its slots are free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotOffer {
    pub worker: String,
    pub free: u32,
}

/// Where each subtask runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Per shared slot (index k holds subtask k of every chain): the index of its worker in the
    /// offers.
    pub slots: Vec<usize>,
    /// How many slots of each offer the job takes, by offer index.
    pub per_worker: Vec<u32>,
}

impl Placement {
    /// The offer index of the worker that runs subtask `subtask` (of any chain).
    pub fn worker_of(&self, subtask: u32) -> usize {
        self.slots[subtask as usize]
    }
}

/// The job does not fit in the free slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotEnoughSlots {
    pub needed: u32,
    pub free: u32,
    pub workers: usize,
}

impl fmt::Display for NotEnoughSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the job needs {} slots (its largest parallelism, slots being shared by its chains), \
             but {} {} free on {} worker{}: lower the parallelism, or add workers or slots",
            self.needed,
            self.free,
            if self.free == 1 { "is" } else { "are" },
            self.workers,
            if self.workers == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for NotEnoughSlots {}

/// The slots a job needs with slot sharing: its largest parallelism.
pub fn slots_needed(exec: &ExecutionGraph) -> u32 {
    exec.chains.iter().map(|c| c.parallelism).max().unwrap_or(0)
}

/// Places a job needing `needed` shared slots on the `offers`, spreading them evenly.
pub fn place(needed: u32, offers: &[SlotOffer]) -> Result<Placement, NotEnoughSlots> {
    let free: u32 = offers.iter().map(|o| o.free).sum();
    if needed > free {
        return Err(NotEnoughSlots {
            needed,
            free,
            workers: offers.len(),
        });
    }
    let mut per_worker = vec![0u32; offers.len()];
    let mut slots = Vec::with_capacity(needed as usize);
    for _ in 0..needed {
        // The fewest of this job's slots so far; then the most free slots left; then the
        // first offered, so that the placement depends on nothing but its input.
        let w = (0..offers.len())
            .filter(|&w| per_worker[w] < offers[w].free)
            .min_by_key(|&w| {
                (
                    per_worker[w],
                    std::cmp::Reverse(offers[w].free - per_worker[w]),
                    w,
                )
            })
            .expect("enough free slots, checked above");
        per_worker[w] += 1;
        slots.push(w);
    }
    Ok(Placement { slots, per_worker })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(free: &[u32]) -> Vec<SlotOffer> {
        free.iter()
            .enumerate()
            .map(|(i, &free)| SlotOffer {
                worker: format!("w{i}"),
                free,
            })
            .collect()
    }

    /// Per worker, how many of the first `parallelism` subtasks (a chain of that parallelism)
    /// it runs.
    fn spread(p: &Placement, parallelism: u32, workers: usize) -> Vec<u32> {
        let mut n = vec![0; workers];
        for s in 0..parallelism {
            n[p.worker_of(s)] += 1;
        }
        n
    }

    #[test]
    fn twelve_subtasks_on_two_eight_slot_workers_get_six_and_six() {
        let p = place(12, &offers(&[8, 8])).unwrap();
        assert_eq!(p.per_worker, [6, 6]);
        // A smaller chain of the same job is spread too.
        assert_eq!(spread(&p, 4, 2), [2, 2]);
        assert_eq!(spread(&p, 12, 2), [6, 6]);
    }

    #[test]
    fn every_chain_is_spread_as_evenly_as_the_free_slots_allow() {
        for (free, needed) in [
            (vec![8, 8, 8], 7),
            (vec![4, 4, 4, 4], 13),
            (vec![2, 8, 8], 12),
            (vec![1, 1, 10], 12),
            (vec![3, 5], 8),
        ] {
            let o = offers(&free);
            let p = place(needed, &o).unwrap();
            assert_eq!(p.per_worker.iter().sum::<u32>(), needed);
            for (w, &n) in p.per_worker.iter().enumerate() {
                assert!(n <= free[w], "{free:?} {needed}: {:?}", p.per_worker);
            }
            // For every prefix (a chain of that parallelism), a worker with room runs at most one
            // subtask more than any other: no worker is loaded while another has free slots.
            for parallelism in 1..=needed {
                let n = spread(&p, parallelism, free.len());
                for a in 0..free.len() {
                    for b in 0..free.len() {
                        let b_full = n[b] == free[b];
                        assert!(
                            n[a] <= n[b] + 1 || b_full,
                            "{free:?} {needed}, chain of {parallelism}: {n:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_job_that_does_not_fit_is_refused_with_what_it_needs() {
        let e = place(12, &offers(&[4, 4])).unwrap_err();
        assert_eq!(
            e,
            NotEnoughSlots {
                needed: 12,
                free: 8,
                workers: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "the job needs 12 slots (its largest parallelism, slots being shared by its chains), \
             but 8 are free on 2 workers: lower the parallelism, or add workers or slots"
        );
        assert!(place(1, &[]).is_err());
        assert_eq!(place(0, &[]).unwrap().slots, Vec::<usize>::new());
    }

    #[test]
    fn the_placement_depends_only_on_its_input() {
        let o = offers(&[5, 7, 6]);
        assert_eq!(place(11, &o), place(11, &o));
        // Ties go to the worker with the most free slots left, then the first offered.
        assert_eq!(place(3, &o).unwrap().slots, [1, 2, 0]);
    }

    #[test]
    fn slots_needed_is_the_largest_parallelism() {
        let chain = |parallelism| crate::plan::Chain {
            nodes: vec![0],
            parallelism,
            inputs: Vec::new(),
        };
        let exec = ExecutionGraph {
            chains: vec![chain(3), chain(5), chain(1)],
            chained: Vec::new(),
        };
        assert_eq!(slots_needed(&exec), 5);
    }
}
