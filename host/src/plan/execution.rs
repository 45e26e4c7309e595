//! The execution graph: nodes grouped into chains (Flink's operator chaining), each chain run as
//! `parallelism` tasks. Records pass between the nodes of a chain as the same buffer, with no
//! channel; between chains they travel through credit-bounded channels.

use super::{JobGraph, Partition};

/// Operators run together in one task, head first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Node indices in the job graph; each after the previous one's main output.
    pub nodes: Vec<usize>,
    pub parallelism: u32,
    /// Edges from other chains into the head, in the order their channels are numbered.
    pub inputs: Vec<InputEdge>,
}

/// An edge into a chain's head from another chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputEdge {
    /// Index into the job graph's edges.
    pub edge: usize,
    pub partition: Partition,
    pub upstream_parallelism: u32,
}

impl InputEdge {
    /// How many channels each downstream subtask has for this edge: one from its forward peer,
    /// else one from every upstream subtask.
    pub fn channels_per_subtask(&self) -> u32 {
        if self.partition == Partition::Forward {
            1
        } else {
            self.upstream_parallelism
        }
    }
}

/// One channel between two tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    /// The job-graph edge it carries.
    pub edge: usize,
    /// Upstream and downstream task: (chain, subtask).
    pub from: (usize, u32),
    pub to: (usize, u32),
    /// Its index in the downstream task's gate.
    pub gate_channel: u32,
}

/// The chains of a job.
#[derive(Clone, Debug)]
pub struct ExecutionGraph {
    pub chains: Vec<Chain>,
    /// For each job-graph edge, whether it runs inside a chain.
    pub chained: Vec<bool>,
}

impl ExecutionGraph {
    /// Groups the job's nodes into chains: an edge is chained when chaining is on, it leaves its
    /// node's main output as the only edge there, it is `forward` between equal parallelism, and
    /// it is the only input of its target.
    pub fn build(job: &JobGraph) -> Self {
        let n = job.nodes.len();
        let chained: Vec<bool> = job
            .edges
            .iter()
            .map(|e| {
                let (from, to) = (&job.nodes[e.from], &job.nodes[e.to]);
                job.chaining
                    && e.output.is_none()
                    && to.partition == Partition::Forward
                    && from.parallelism == to.parallelism
                    && job.edges.iter().filter(|x| x.to == e.to).count() == 1
                    && job
                        .edges
                        .iter()
                        .filter(|x| x.from == e.from && x.output.is_none())
                        .count()
                        == 1
            })
            .collect();
        let mut next = vec![None; n];
        let mut has_chained_input = vec![false; n];
        for (e, &c) in job.edges.iter().zip(&chained) {
            if c {
                next[e.from] = Some(e.to);
                has_chained_input[e.to] = true;
            }
        }
        let mut chains = Vec::new();
        for head in (0..n).filter(|&i| !has_chained_input[i]) {
            let mut nodes = vec![head];
            while let Some(nx) = next[*nodes.last().expect("chains start non-empty")] {
                nodes.push(nx);
            }
            let inputs = job
                .edges
                .iter()
                .enumerate()
                .filter(|(_, e)| e.to == head)
                .map(|(i, e)| InputEdge {
                    edge: i,
                    partition: job.nodes[head].partition,
                    upstream_parallelism: job.nodes[e.from].parallelism,
                })
                .collect();
            chains.push(Chain {
                nodes,
                parallelism: job.nodes[head].parallelism,
                inputs,
            });
        }
        ExecutionGraph { chains, chained }
    }

    /// How many input channels each subtask of `chain` has (its gate's size).
    pub fn gate_channels(&self, chain: usize) -> u32 {
        self.chains[chain]
            .inputs
            .iter()
            .map(InputEdge::channels_per_subtask)
            .sum()
    }

    /// Where the channels of job-graph edge `edge` (between chains) leave upstream subtask
    /// `from`: per downstream subtask it reaches, in the order of the upstream record writer's
    /// targets, that subtask and its gate's channel. Gate channels are numbered by input edge,
    /// then by upstream subtask (one per input edge for `forward`).
    pub fn targets(&self, job: &JobGraph, edge: usize, from: u32) -> (usize, Vec<(u32, u32)>) {
        let down = self.chain_of(job.edges[edge].to);
        let chain = &self.chains[down];
        let input = chain
            .inputs
            .iter()
            .position(|i| i.edge == edge)
            .expect("a cross-chain edge is an input of its target chain");
        let offset: u32 = chain.inputs[..input]
            .iter()
            .map(InputEdge::channels_per_subtask)
            .sum();
        let targets = if chain.inputs[input].partition == Partition::Forward {
            vec![(from, offset)]
        } else {
            (0..chain.parallelism).map(|t| (t, offset + from)).collect()
        };
        (down, targets)
    }

    /// Every channel between tasks: (edge, upstream chain and subtask, downstream chain and
    /// subtask, the downstream gate's channel).
    pub fn channels(&self, job: &JobGraph) -> Vec<ChannelSpec> {
        let mut out = Vec::new();
        for (edge, e) in job.edges.iter().enumerate() {
            if self.chained[edge] {
                continue;
            }
            let up = self.chain_of(e.from);
            for from in 0..self.chains[up].parallelism {
                let (down, targets) = self.targets(job, edge, from);
                for (to, gate_channel) in targets {
                    out.push(ChannelSpec {
                        edge,
                        from: (up, from),
                        to: (down, to),
                        gate_channel,
                    });
                }
            }
        }
        out
    }

    /// The chain holding `node`.
    pub fn chain_of(&self, node: usize) -> usize {
        self.chains
            .iter()
            .position(|c| c.nodes.contains(&node))
            .expect("every node is in a chain")
    }

    /// A one-line description, e.g. `[lines -> split] =hash=> [count -> out]`.
    pub fn describe(&self, job: &JobGraph) -> String {
        self.chains
            .iter()
            .map(|c| {
                let names: Vec<&str> = c.nodes.iter().map(|&i| job.nodes[i].uid.as_str()).collect();
                format!("[{}] x{}", names.join(" -> "), c.parallelism)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::{DatagenConfig, DatagenShape, SinkConfig, SourceConfig};
    use crate::plan::{Edge, GuestLimits, Node, NodeKind, OperatorNode};
    use std::time::Duration;

    fn job(parallelisms: &[u32], partitions: &[Partition], chaining: bool) -> JobGraph {
        let last = parallelisms.len() - 1;
        let nodes = parallelisms
            .iter()
            .zip(partitions)
            .enumerate()
            .map(|(i, (&parallelism, &partition))| Node {
                uid: format!("n{i}"),
                parallelism,
                partition,
                kind: if i == 0 {
                    NodeKind::Source(SourceConfig::Datagen(DatagenConfig {
                        seed: 0,
                        count: Some(1),
                        rate: None,
                        shape: DatagenShape::Sequence,
                    }))
                } else if i == last {
                    NodeKind::Sink(SinkConfig::Stdout {
                        delay: Duration::ZERO,
                    })
                } else {
                    NodeKind::Operator(OperatorNode {
                        component: "x.wasm".into(),
                        config_json: "{}".into(),
                    })
                },
                time: None,
            })
            .collect();
        let edges = (0..last)
            .map(|i| Edge {
                from: i,
                output: None,
                to: i + 1,
            })
            .collect();
        JobGraph {
            name: "t".into(),
            max_parallelism: 128,
            chaining,
            buffer_bytes: 1024,
            network_bytes: 1 << 30,
            checkpoint: None,
            restart: crate::checkpoint::RestartStrategy::None,
            flush_interval: Duration::from_millis(1),
            limits: GuestLimits::default(),
            nodes,
            edges,
        }
    }

    use Partition::*;

    #[test]
    fn channels_are_numbered_by_input_edge_then_upstream_subtask() {
        // n0 x2 -forward-> n1 x2 (chained), n1 -hash-> n2 x3, n2 -rebalance-> n3 x1.
        let j = job(&[2, 2, 3, 1], &[Forward, Forward, Hash, Rebalance], true);
        let g = ExecutionGraph::build(&j);
        let ch = g.channels(&j);
        // 2 x 3 hash channels, then 3 x 1 rebalance ones.
        assert_eq!(ch.len(), 9);
        assert_eq!(g.gate_channels(1), 2);
        assert_eq!(g.gate_channels(2), 3);
        let into = |chain: usize, sub: u32| -> Vec<u32> {
            let mut v: Vec<u32> = ch
                .iter()
                .filter(|c| c.to == (chain, sub))
                .map(|c| c.gate_channel)
                .collect();
            v.sort();
            v
        };
        // Every gate channel of every downstream subtask is fed exactly once.
        for s in 0..3 {
            assert_eq!(into(1, s), [0, 1]);
        }
        assert_eq!(into(2, 0), [0, 1, 2]);
        assert_eq!(g.targets(&j, 1, 1), (1, vec![(0, 1), (1, 1), (2, 1)]));
        // Forward between unchained tasks: one channel, to the same subtask.
        let j = job(&[2, 2], &[Forward, Forward], false);
        let g = ExecutionGraph::build(&j);
        assert_eq!(g.targets(&j, 0, 1), (1, vec![(1, 0)]));
    }

    #[test]
    fn chains_forward_edges_of_equal_parallelism() {
        let j = job(&[2, 2, 2, 2], &[Forward, Forward, Hash, Forward], true);
        let g = ExecutionGraph::build(&j);
        let nodes: Vec<_> = g.chains.iter().map(|c| c.nodes.clone()).collect();
        assert_eq!(nodes, [vec![0, 1], vec![2, 3]]);
        assert_eq!(g.chained, [true, false, true]);
        assert_eq!(
            g.chains[1].inputs,
            [InputEdge {
                edge: 1,
                partition: Hash,
                upstream_parallelism: 2
            }]
        );
        assert_eq!(g.describe(&j), "[n0 -> n1] x2, [n2 -> n3] x2");
    }

    #[test]
    fn breaks_chains_when_off_or_parallelism_differs() {
        let g = ExecutionGraph::build(&job(&[2, 2, 2], &[Forward, Forward, Forward], false));
        assert_eq!(g.chains.len(), 3);
        assert_eq!(g.chains[1].inputs[0].channels_per_subtask(), 1);
        let g = ExecutionGraph::build(&job(&[1, 3, 3], &[Forward, Rebalance, Forward], true));
        assert_eq!(
            g.chains.iter().map(|c| c.nodes.clone()).collect::<Vec<_>>(),
            [vec![0], vec![1, 2]]
        );
        assert_eq!(g.chains[1].inputs[0].channels_per_subtask(), 1);
        assert_eq!(g.chain_of(2), 1);
    }
}
