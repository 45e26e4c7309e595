//! In-process channels between tasks: an input gate per downstream task, holding one queue per
//! channel, bounded by credits (see [`super::credit`]). A sender blocks while its channel has no
//! credit, which is how backpressure travels upstream; the receiver takes buffers round robin
//! across channels. Events (checkpoint barriers, end of partition) travel in-band after the data
//! before them and need no credit; the gate aligns barriers (see [`crate::checkpoint::align`]),
//! reading no channel that is blocked for alignment. A channel may also be remote: its buffers
//! arrive from a QUIC stream ([`RemoteInbox`]), under the credit of [`crate::net::data`], and
//! taking one returns its credit there instead of to the gate's own accounting.

use super::credit::Credits;
use crate::checkpoint::{Aligned, Aligner, CheckpointId, Mode};
use crate::net::data::{Delivery, Inbox, RemoteInputs, RemoteSender};
use crate::plan::ExecutionGraph;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Exclusive buffers per channel (Flink's `taskmanager.network.memory.buffers-per-channel`).
pub const EXCLUSIVE_BUFFERS: u32 = 2;
/// Floating buffers per gate (Flink's `floating-buffers-per-gate`).
pub const FLOATING_BUFFERS: u32 = 8;

/// The most buffers a job's channels can hold at once, queued in gates (every channel's
/// exclusive credit and every gate's floating buffers) or pending in record writers (one per
/// channel): with the buffer size, the bound of the job's network memory.
pub fn max_buffers(exec: &ExecutionGraph) -> u64 {
    exec.chains
        .iter()
        .filter(|c| !c.inputs.is_empty())
        .map(|c| {
            let channels: u64 = c
                .inputs
                .iter()
                .map(|i| u64::from(i.channels_per_subtask()))
                .sum();
            u64::from(c.parallelism)
                * (channels * (u64::from(EXCLUSIVE_BUFFERS) + 1) + u64::from(FLOATING_BUFFERS))
        })
        .sum()
}

/// What travels through a channel: data, or an event in-band after the data before it.
#[derive(Debug)]
enum Event {
    Data(Vec<u8>),
    Barrier(CheckpointId),
    /// The sender's watermark (ms).
    Watermark(i64),
    EndOfPartition,
}

/// What [`Gate::recv`] returns.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A buffer of records (flat format).
    Data(Vec<u8>),
    /// Every live channel has delivered barrier n, after aligning for the given time: the task
    /// snapshots and forwards it.
    Barrier(CheckpointId, Duration),
    /// Checkpoint n cannot complete at this task (a newer barrier overtook it).
    Abandoned(CheckpointId),
    /// The task's watermark advanced: the minimum over its inputs (`crate::time::Valve`); or,
    /// as `crate::time::watermark::IDLE`, every input is idle.
    Watermark(i64),
    /// Every channel has delivered its end of partition.
    AllEnded,
    /// The deadline passed with nothing to read (or the gate was woken: [`Gate::wake`]).
    TimedOut,
    /// The job is being cancelled.
    Cancelled,
}

/// The job is being cancelled; whoever waited should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

struct GateState {
    queues: Vec<VecDeque<Event>>,
    credits: Credits,
    open_channels: usize,
    /// Where the next round-robin scan starts.
    cursor: usize,
    aligner: Aligner,
    /// When the first barrier of the checkpoint being aligned arrived.
    aligning_since: Option<Instant>,
    cancelled: bool,
    /// The minimum watermark over the channels.
    valve: crate::time::Valve,
    /// A watermark the valve gave that is still to be returned.
    watermark: Option<i64>,
    /// A watermark has come on some channel: the job has event time.
    event_time: bool,
    /// Woken for something besides input (a query of its task's state): the next wait ends.
    woken: bool,
    /// Per channel: for a remote one, its inputs and its index there.
    remote: Vec<Option<(Arc<RemoteInputs>, usize)>>,
}

impl GateState {
    /// Keeps the newest of what the valve said, to forward: a watermark, idleness (as
    /// [`crate::time::watermark::IDLE`]) or, back from it, the watermark as it stands.
    fn take_watermark(&mut self, out: Vec<crate::time::ValveOutput>) {
        use crate::time::{ValveOutput, watermark};
        for o in out {
            self.watermark = Some(match o {
                ValveOutput::Watermark(wm) => wm,
                ValveOutput::Idle => watermark::IDLE,
                ValveOutput::Active => self.valve.current().max(watermark::MIN + 1),
            });
        }
    }

    /// Returns the credit of a buffer taken from `ch`: to the gate's accounting for a local
    /// channel; a remote one's is returned by the caller, outside the lock.
    fn taken(&mut self, ch: usize, remote: &mut Vec<(Arc<RemoteInputs>, usize)>) {
        match &self.remote[ch] {
            Some((inputs, r)) => remote.push((inputs.clone(), *r)),
            None => self.credits.release(ch),
        }
    }
}

/// Returns remote channels' credit for buffers taken.
fn return_credit(taken: Vec<(Arc<RemoteInputs>, usize)>) {
    for (inputs, r) in taken {
        if let Err(e) = inputs.consumed(r) {
            tracing::error!("remote channel credit: {e}");
        }
    }
}

/// The input side of a task: all channels into it.
pub struct Gate {
    state: Mutex<GateState>,
    readable: Condvar,
    writable: Condvar,
}

impl Gate {
    /// A gate with `channels` channels, aligning barriers in `mode`.
    pub fn new(channels: usize, mode: Mode) -> Arc<Self> {
        Arc::new(Gate {
            state: Mutex::new(GateState {
                queues: (0..channels).map(|_| VecDeque::new()).collect(),
                credits: Credits::new(channels, EXCLUSIVE_BUFFERS, FLOATING_BUFFERS),
                open_channels: channels,
                cursor: 0,
                aligner: Aligner::new(mode, channels),
                aligning_since: None,
                cancelled: false,
                valve: crate::time::Valve::new(channels),
                watermark: None,
                event_time: false,
                woken: false,
                remote: vec![None; channels],
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // A panic while holding the lock cannot leave the queues half-updated; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sending end of channel `channel`.
    pub fn sender(self: &Arc<Self>, channel: usize) -> ChannelSender {
        ChannelSender(Sender::Local {
            gate: self.clone(),
            channel,
        })
    }

    /// The next buffer or completed barrier from any channel not blocked for alignment,
    /// waiting until `deadline` (or forever if `None`).
    pub fn recv(&self, deadline: Option<Instant>) -> Received {
        let mut s = self.lock();
        loop {
            if s.cancelled {
                return Received::Cancelled;
            }
            // A watermark the last scan advanced goes first: data keeps coming after it.
            if let Some(wm) = s.watermark.take() {
                return Received::Watermark(wm);
            }
            let n = s.queues.len();
            // An event consumed may have data behind it, or unblock channels: scan again.
            let mut consumed = false;
            for k in 0..n {
                let ch = (s.cursor + k) % n;
                if s.aligner.is_blocked(ch) {
                    continue;
                }
                let event = s.queues[ch].pop_front();
                consumed |= event.is_some();
                let aligned = match event {
                    Some(Event::Data(buf)) => {
                        s.cursor = (ch + 1) % n;
                        let mut remote = Vec::new();
                        s.taken(ch, &mut remote);
                        drop(s);
                        return_credit(remote);
                        self.writable.notify_all();
                        return Received::Data(buf);
                    }
                    Some(Event::Barrier(id)) => s.aligner.barrier(ch, id),
                    Some(Event::Watermark(wm)) => {
                        s.event_time = true;
                        let out = if wm == crate::time::watermark::IDLE {
                            s.valve.on_idle(ch)
                        } else {
                            s.valve.on_watermark(ch, wm)
                        };
                        s.take_watermark(out);
                        Aligned::Wait
                    }
                    Some(Event::EndOfPartition) => {
                        // An ended channel holds no watermark back (in a job with event time:
                        // once every channel has ended, the last watermark is the end of time).
                        let out = s.valve.on_end(ch);
                        if s.event_time {
                            s.take_watermark(out);
                        }
                        s.open_channels -= 1;
                        s.aligner.end_of_partition(ch)
                    }
                    None => Aligned::Wait,
                };
                match aligned {
                    Aligned::Wait => {
                        if s.aligner.pending().is_some() && s.aligning_since.is_none() {
                            s.aligning_since = Some(Instant::now());
                        }
                    }
                    Aligned::Complete(id) => {
                        let since = s.aligning_since.take();
                        return Received::Barrier(
                            id,
                            since.map_or(Duration::ZERO, |t| t.elapsed()),
                        );
                    }
                    Aligned::Abandoned(id) => {
                        s.aligning_since = Some(Instant::now());
                        return Received::Abandoned(id);
                    }
                }
            }
            if let Some(wm) = s.watermark.take() {
                return Received::Watermark(wm);
            }
            if s.open_channels == 0 {
                return Received::AllEnded;
            }
            if consumed {
                continue;
            }
            if s.woken {
                s.woken = false;
                return Received::TimedOut;
            }
            s = match deadline {
                None => self.readable.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Received::TimedOut;
                    }
                    self.readable
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Like [`Gate::recv`], but when more buffers are already queued, they come too, appended to
    /// the first (round robin across channels, data only, each channel's order kept) while the
    /// whole stays within `max_bytes` (0: nothing is merged). A task that falls behind thus makes fewer and larger
    /// calls into its operators, each of which pays a fixed cost, and a keyed operator sees more
    /// repeats of a key per call. Nothing waits for a buffer to arrive: only what is queued is
    /// merged, so no latency is added.
    pub fn recv_merged(&self, deadline: Option<Instant>, max_bytes: usize) -> Received {
        match self.recv(deadline) {
            Received::Data(mut buf) => {
                self.take_queued(&mut buf, max_bytes);
                Received::Data(buf)
            }
            other => other,
        }
    }

    /// Appends queued data buffers to `buf` while it stays within `max_bytes`.
    fn take_queued(&self, buf: &mut Vec<u8>, max_bytes: usize) {
        let mut s = self.lock();
        let n = s.queues.len();
        let mut took = false;
        let mut remote = Vec::new();
        let mut progress = true;
        while progress {
            progress = false;
            for k in 0..n {
                let ch = (s.cursor + k) % n;
                if s.aligner.is_blocked(ch) {
                    continue;
                }
                let fits = match s.queues[ch].front() {
                    Some(Event::Data(next)) => buf.len() + next.len() <= max_bytes,
                    _ => false,
                };
                if fits && let Some(Event::Data(next)) = s.queues[ch].pop_front() {
                    buf.extend_from_slice(&next);
                    s.taken(ch, &mut remote);
                    s.cursor = (ch + 1) % n;
                    took = true;
                    progress = true;
                }
            }
        }
        drop(s);
        return_credit(remote);
        if took {
            self.writable.notify_all();
        }
    }

    /// Checkpoint `id` was aborted: stop aligning it, read its blocked channels again.
    pub fn abort(&self, id: CheckpointId) {
        let mut s = self.lock();
        s.aligner.abort(id);
        if s.aligner.pending().is_none() {
            s.aligning_since = None;
        }
        drop(s);
        self.readable.notify_all();
    }

    /// Wakes everyone waiting on this gate with [`Cancelled`]; buffered data is dropped.
    /// Ends a wait for input as if its deadline had passed (the task has something else to
    /// do: a query of its state).
    pub fn wake(&self) {
        self.lock().woken = true;
        self.readable.notify_all();
    }

    pub fn cancel(&self) {
        let mut s = self.lock();
        s.cancelled = true;
        s.queues.iter_mut().for_each(VecDeque::clear);
        drop(s);
        self.readable.notify_all();
        self.writable.notify_all();
    }

    /// Makes channel `channel` remote: its buffers come through `inputs` (as its channel
    /// `index`), delivered by a [`RemoteInbox`].
    pub fn attach_remote(&self, channel: usize, inputs: Arc<RemoteInputs>, index: usize) {
        self.lock().remote[channel] = Some((inputs, index));
    }

    /// What a remote channel delivered. Its credit was checked by the network side.
    fn deliver(&self, channel: usize, event: Event) {
        let mut s = self.lock();
        if s.cancelled {
            return;
        }
        s.queues[channel].push_back(event);
        drop(s);
        self.readable.notify_one();
    }

    /// Per channel: for a remote one, the credit announced to its sender and not yet used.
    pub fn remote_credits(&self) -> Vec<Option<u32>> {
        let remote = self.lock().remote.clone();
        remote
            .into_iter()
            .map(|r| r.map(|(inputs, i)| inputs.credit(i)))
            .collect()
    }

    /// Buffers sent into this gate and not yet taken, per channel (for metrics and tests).
    pub fn in_flight(&self) -> Vec<u32> {
        let s = self.lock();
        (0..s.queues.len())
            .map(|c| s.credits.in_flight(c))
            .collect()
    }
}

/// Delivers a gate's remote channels (numbered as in their [`RemoteInputs`]) into it.
pub struct RemoteInbox {
    pub gate: Arc<Gate>,
    /// Per remote channel: its channel in the gate.
    pub channels: Vec<usize>,
    /// The job (attempt) the gate belongs to: a channel that breaks fails it.
    pub control: Arc<super::JobControl>,
}

impl Inbox for RemoteInbox {
    fn deliver(&self, channel: usize, delivery: Delivery) {
        let event = match delivery {
            Delivery::Data(records) => Event::Data(records.to_vec()),
            Delivery::Barrier(id) => Event::Barrier(id),
            Delivery::Watermark(wm) => Event::Watermark(wm),
            Delivery::End => Event::EndOfPartition,
        };
        self.gate.deliver(self.channels[channel], event);
    }

    fn broken(&self, _channel: usize, why: String) {
        self.control.cancel_because(&why);
    }
}

/// The sending end of one channel: into a gate of this process, or a QUIC stream to a gate of
/// another.
pub struct ChannelSender(Sender);

enum Sender {
    Local { gate: Arc<Gate>, channel: usize },
    Remote(RemoteSender),
}

impl ChannelSender {
    /// The sending end of a remote channel.
    pub fn remote(sender: RemoteSender) -> Self {
        ChannelSender(Sender::Remote(sender))
    }

    /// For a remote channel: what closes it when its job's attempt is cancelled (a local one
    /// wakes with its gate).
    pub fn closer(&self) -> Option<Box<dyn Fn() + std::marker::Send + Sync>> {
        match &self.0 {
            Sender::Local { .. } => None,
            Sender::Remote(r) => {
                let close = r.closer();
                Some(Box::new(move || close("the job's attempt was cancelled")))
            }
        }
    }

    /// Sends a buffer, waiting for credit: this wait is backpressure.
    pub fn send(&self, buf: Vec<u8>) -> Result<(), Cancelled> {
        let (gate, channel) = match &self.0 {
            Sender::Local { gate, channel } => (gate, *channel),
            Sender::Remote(r) => return r.send(buf).map_err(closed),
        };
        let mut s = gate.lock();
        loop {
            if s.cancelled {
                return Err(Cancelled);
            }
            if s.credits.try_acquire(channel) {
                s.queues[channel].push_back(Event::Data(buf));
                drop(s);
                gate.readable.notify_one();
                return Ok(());
            }
            s = gate.writable.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Ends this channel: no buffer follows.
    pub fn end(&self) -> Result<(), Cancelled> {
        match &self.0 {
            Sender::Local { .. } => self.event(Event::EndOfPartition),
            Sender::Remote(r) => r.end().map_err(closed),
        }
    }

    /// Sends barrier `id` after everything sent before it.
    pub fn barrier(&self, id: CheckpointId) -> Result<(), Cancelled> {
        match &self.0 {
            Sender::Local { .. } => self.event(Event::Barrier(id)),
            Sender::Remote(r) => r.barrier(id).map_err(closed),
        }
    }

    /// Sends watermark `wm` after the data before it; one still queued is replaced, so that
    /// watermarks take no more room than the buffers between them.
    pub fn watermark(&self, wm: i64) -> Result<(), Cancelled> {
        match &self.0 {
            Sender::Local { .. } => self.event(Event::Watermark(wm)),
            Sender::Remote(r) => r.watermark(wm).map_err(closed),
        }
    }

    /// Events need no credit: at most one barrier per checkpoint in flight, one end, and one
    /// watermark between two buffers.
    fn event(&self, event: Event) -> Result<(), Cancelled> {
        let Sender::Local { gate, channel } = &self.0 else {
            unreachable!("remote events go through the remote sender")
        };
        let mut s = gate.lock();
        if s.cancelled {
            return Err(Cancelled);
        }
        let queue = &mut s.queues[*channel];
        match (queue.back_mut(), event) {
            (Some(Event::Watermark(last)), Event::Watermark(wm)) => *last = wm,
            (_, event) => queue.push_back(event),
        }
        drop(s);
        gate.readable.notify_one();
        Ok(())
    }
}

/// A remote channel whose connection broke: the task stops as if cancelled; the connection's
/// failure, which its driver reports, is the job's cause (its tasks fail over).
fn closed(e: crate::net::data::Closed) -> Cancelled {
    tracing::debug!("{e}");
    Cancelled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_order_per_channel_and_ends_when_all_channels_end() {
        let gate = Gate::new(2, Mode::ExactlyOnce);
        let (a, b) = (gate.sender(0), gate.sender(1));
        a.send(vec![1]).unwrap();
        b.send(vec![2]).unwrap();
        a.send(vec![3]).unwrap();
        a.end().unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            match gate.recv(None) {
                Received::Data(d) => got.push(d[0]),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(
            gate.recv(Some(Instant::now() + Duration::from_millis(5))),
            Received::TimedOut
        );
        b.end().unwrap();
        assert_eq!(gate.recv(None), Received::AllEnded);
    }

    #[test]
    fn watermarks_come_as_the_minimum_over_the_channels_and_replace_each_other_while_queued() {
        let gate = Gate::new(2, Mode::ExactlyOnce);
        let (a, b) = (gate.sender(0), gate.sender(1));
        a.send(vec![1]).unwrap();
        a.watermark(10).unwrap();
        // Queued behind nothing new: 12 replaces 10, behind the buffer before them.
        a.watermark(12).unwrap();
        b.watermark(5).unwrap();
        b.send(vec![2]).unwrap();
        b.watermark(20).unwrap();
        assert_eq!(gate.recv(None), Received::Data(vec![1]));
        // Channel 1's 5 is the minimum once channel 0 has said 12.
        assert_eq!(gate.recv(None), Received::Watermark(5));
        assert_eq!(gate.recv(None), Received::Data(vec![2]));
        assert_eq!(gate.recv(None), Received::Watermark(12));
        // Ended channels hold nothing back: the end of time, then the end.
        a.end().unwrap();
        assert_eq!(gate.recv(None), Received::Watermark(20));
        b.end().unwrap();
        assert_eq!(gate.recv(None), Received::Watermark(i64::MAX));
        assert_eq!(gate.recv(None), Received::AllEnded);
    }

    #[test]
    fn merges_queued_buffers_within_the_limit_in_channel_order() {
        let gate = Gate::new(2, Mode::ExactlyOnce);
        let (a, b) = (gate.sender(0), gate.sender(1));
        a.send(vec![1, 1]).unwrap();
        a.send(vec![2, 2]).unwrap();
        b.send(vec![3, 3]).unwrap();
        a.send(vec![4, 4]).unwrap();
        b.end().unwrap();
        // 6 bytes at most: three buffers, taking turns between channels, channel 0's in order;
        // the end of channel 1 is not data and stays for `recv`.
        assert_eq!(
            gate.recv_merged(None, 6),
            Received::Data(vec![1, 1, 3, 3, 2, 2])
        );
        assert_eq!(
            gate.in_flight(),
            [1, 0],
            "taken buffers gave their credit back"
        );
        // Nothing else queued: the next buffer comes alone, without waiting for more.
        assert_eq!(gate.recv_merged(None, 100), Received::Data(vec![4, 4]));
        a.end().unwrap();
        assert_eq!(gate.recv_merged(None, 100), Received::AllEnded);
    }

    fn data(r: Received) -> u8 {
        match r {
            Received::Data(d) => d[0],
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn exactly_once_reads_nothing_past_a_barrier_until_every_channel_delivered_it() {
        let gate = Gate::new(2, Mode::ExactlyOnce);
        let (a, b) = (gate.sender(0), gate.sender(1));
        a.send(vec![1]).unwrap();
        a.barrier(7).unwrap();
        a.send(vec![2]).unwrap();
        b.send(vec![3]).unwrap();
        let soon = || Some(Instant::now() + Duration::from_millis(20));
        let mut got = vec![data(gate.recv(None)), data(gate.recv(None))];
        got.sort();
        assert_eq!(got, [1, 3]);
        // Channel 0 is blocked behind its barrier: its 2 waits, and so does merging.
        assert_eq!(gate.recv_merged(soon(), 100), Received::TimedOut);
        b.barrier(7).unwrap();
        assert!(matches!(gate.recv(None), Received::Barrier(7, _)));
        assert_eq!(data(gate.recv(None)), 2);
    }

    #[test]
    fn at_least_once_reads_on_past_a_barrier() {
        let gate = Gate::new(2, Mode::AtLeastOnce);
        let (a, b) = (gate.sender(0), gate.sender(1));
        a.barrier(1).unwrap();
        a.send(vec![2]).unwrap();
        assert_eq!(data(gate.recv(None)), 2);
        b.barrier(1).unwrap();
        assert!(matches!(gate.recv(None), Received::Barrier(1, _)));
    }

    #[test]
    fn an_aborted_alignment_reads_its_blocked_channel_again() {
        let gate = Gate::new(2, Mode::ExactlyOnce);
        let a = gate.sender(0);
        a.barrier(1).unwrap();
        a.send(vec![5]).unwrap();
        assert_eq!(
            gate.recv(Some(Instant::now() + Duration::from_millis(20))),
            Received::TimedOut
        );
        gate.abort(1);
        assert_eq!(data(gate.recv(None)), 5);
    }

    #[test]
    fn a_sender_without_credit_blocks_until_the_receiver_takes_a_buffer() {
        let gate = Gate::new(1, Mode::ExactlyOnce);
        let tx = gate.sender(0);
        let capacity = (EXCLUSIVE_BUFFERS + FLOATING_BUFFERS) as usize;
        let sender = std::thread::spawn(move || {
            for i in 0..capacity + 5 {
                tx.send(vec![i as u8]).unwrap();
            }
            tx.end().unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            gate.in_flight(),
            [capacity as u32],
            "the sender stopped at its credit"
        );
        let mut n = 0;
        while let Received::Data(d) = gate.recv(None) {
            assert_eq!(d[0] as usize, n);
            n += 1;
        }
        assert_eq!(n, capacity + 5);
        sender.join().unwrap();
    }

    /// One gate, a local channel and a remote one (a QUIC stream on loopback): every buffer
    /// of both arrives once, in its channel's order, and the barrier aligns across both: in
    /// exactly-once mode no buffer sent after it on either channel is read before it.
    #[test]
    fn a_remote_channel_feeds_the_gate_and_aligns_with_a_local_one() {
        use crate::net::data::{RemoteSender, Route, Router, frame_limit, serve_inputs};
        use crate::net::frame::ChannelId;
        use crate::net::loopback::Loopback;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let gate = Gate::new(2, Mode::ExactlyOnce);
        let inputs = RemoteInputs::new(1, EXCLUSIVE_BUFFERS, FLOATING_BUFFERS);
        gate.attach_remote(1, inputs.clone(), 0);
        let inbox = Arc::new(RemoteInbox {
            gate: gate.clone(),
            channels: vec![1],
            control: crate::worker::JobControl::new(),
        });
        let id = ChannelId {
            job: "j".into(),
            attempt: 0,
            edge: 0,
            from: 0,
            to: 0,
        };
        let router = Router::single(
            id.clone(),
            Route {
                inputs,
                inbox,
                channel: 0,
                frame_limit: frame_limit(1024),
            },
        );
        let (remote, link) = runtime.block_on(async {
            let link = Loopback::connect().await.unwrap();
            tokio::spawn(serve_inputs(link.server.clone(), router));
            let remote = RemoteSender::open(&link.client, id, 4).await.unwrap();
            (remote, link)
        });
        let n = 500u32;
        let buffer = |ch: u32, i: u32| [ch.to_le_bytes(), i.to_le_bytes()].concat();
        let (local, remote) = (gate.sender(0), ChannelSender::remote(remote));
        let producers = [
            std::thread::spawn(move || {
                for i in 0..n {
                    local.send(buffer(0, i)).unwrap();
                    if i == n / 2 {
                        local.barrier(3).unwrap();
                    }
                }
                local.end().unwrap();
            }),
            std::thread::spawn(move || {
                for i in 0..n {
                    remote.send(buffer(1, i)).unwrap();
                    if i == n / 2 {
                        remote.barrier(3).unwrap();
                    }
                }
                remote.end().unwrap();
            }),
        ];
        let mut got = [Vec::new(), Vec::new()];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match gate.recv(Some(deadline)) {
                Received::Data(d) => {
                    let ch = u32::from_le_bytes(d[..4].try_into().unwrap()) as usize;
                    got[ch].push(u32::from_le_bytes(d[4..8].try_into().unwrap()));
                }
                Received::Barrier(3, _) => {
                    assert_eq!(
                        [got[0].len(), got[1].len()],
                        [n as usize / 2 + 1; 2],
                        "exactly the buffers before the barrier, on both channels"
                    );
                }
                Received::AllEnded => break,
                other => panic!("{other:?}"),
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        let all: Vec<u32> = (0..n).collect();
        assert_eq!(got, [all.clone(), all]);
        link.close();
    }

    #[test]
    fn cancel_wakes_blocked_senders_and_receivers() {
        let gate = Gate::new(1, Mode::ExactlyOnce);
        let tx = gate.sender(0);
        let sender = std::thread::spawn(move || {
            loop {
                if tx.send(vec![0]).is_err() {
                    return;
                }
            }
        });
        let g2 = gate.clone();
        let receiver_gate = Gate::new(1, Mode::ExactlyOnce);
        let r2 = receiver_gate.clone();
        let receiver = std::thread::spawn(move || r2.recv(None));
        std::thread::sleep(Duration::from_millis(20));
        g2.cancel();
        receiver_gate.cancel();
        sender.join().unwrap();
        assert_eq!(receiver.join().unwrap(), Received::Cancelled);
    }
}
