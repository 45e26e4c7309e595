//! Credit-based flow control across the network, as Flink's since 1.5 (seed 000): the two ends
//! of a remote channel as sans-IO state machines.
//!
//! - The receiving gate ([`InputCredits`]) owns every buffer its channels may fill: a few
//!   exclusive ones per channel, announced as each channel's initial credit, and a floating pool
//!   shared by the gate. A data buffer carries the sender's backlog (the buffers it holds
//!   behind it); the gate grants floating buffers to a channel whose backlog its credit does not
//!   cover. When the task has consumed a buffer, its credit goes back: to its channel (announced
//!   again) or, for a floating buffer the channel no longer needs, to the pool, where another
//!   channel's backlog may claim it.
//! - The sending side ([`OutputQueue`]) holds a bounded queue of buffers and events for one
//!   channel. It sends a buffer only against credit; events (barriers, end of partition) need
//!   none, but never overtake the data before them. When the queue is full the task waits:
//!   that is backpressure, and it reaches the task without blocking any other channel.
//!
//! Buffers in flight into a gate never exceed its exclusive and floating buffers, whatever the
//! senders do: a data frame without credit is a protocol error.

use std::collections::VecDeque;

/// What waits in an output queue: a buffer of records, or an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing<B> {
    Data(B),
    Event(B),
}

/// What to send next on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send<B> {
    /// A buffer, with the sender's backlog behind it.
    Data {
        buffer: B,
        backlog: u32,
    },
    Event(B),
}

/// The sending side of one remote channel.
#[derive(Debug)]
pub struct OutputQueue<B> {
    queue: VecDeque<Outgoing<B>>,
    /// Buffers queued (events not counted).
    buffers: u32,
    /// Most buffers queued before the task must wait.
    capacity: u32,
    /// Buffers the receiver can take.
    credit: u32,
}

impl<B> OutputQueue<B> {
    /// A queue holding up to `capacity` buffers (at least 1).
    pub fn new(capacity: u32) -> Self {
        OutputQueue {
            queue: VecDeque::new(),
            buffers: 0,
            capacity: capacity.max(1),
            credit: 0,
        }
    }

    /// Whether the task may queue another buffer now (else it waits: backpressure).
    pub fn has_room(&self) -> bool {
        self.buffers < self.capacity
    }

    /// Queues a buffer; `Err` gives it back when the queue is full.
    pub fn push(&mut self, buffer: B) -> Result<(), B> {
        if !self.has_room() {
            return Err(buffer);
        }
        self.buffers += 1;
        self.queue.push_back(Outgoing::Data(buffer));
        Ok(())
    }

    /// Queues an event, after the buffers before it (events take no room: a task can always
    /// end its partition or forward a barrier).
    pub fn push_event(&mut self, event: B) {
        self.queue.push_back(Outgoing::Event(event));
    }

    /// Queues an event that replaces the last one queued if `supersedes` says it may (a newer
    /// watermark makes an older one still waiting pointless): events are then bounded by the
    /// buffers between them.
    pub fn push_event_replacing(&mut self, event: B, supersedes: impl Fn(&B) -> bool) {
        match self.queue.back_mut() {
            Some(Outgoing::Event(last)) if supersedes(last) => *last = event,
            _ => self.queue.push_back(Outgoing::Event(event)),
        }
    }

    /// The receiver announced `n` more credit.
    pub fn add_credit(&mut self, n: u32) {
        self.credit = self.credit.saturating_add(n);
    }

    /// The next thing to send, if any may go now: an event at the head always; a buffer when
    /// there is credit.
    pub fn next_send(&mut self) -> Option<Send<B>> {
        match self.queue.front()? {
            Outgoing::Event(_) => match self.queue.pop_front() {
                Some(Outgoing::Event(e)) => Some(Send::Event(e)),
                _ => unreachable!("the head is an event"),
            },
            Outgoing::Data(_) if self.credit > 0 => {
                let Some(Outgoing::Data(buffer)) = self.queue.pop_front() else {
                    unreachable!("the head is a buffer")
                };
                self.credit -= 1;
                self.buffers -= 1;
                Some(Send::Data {
                    buffer,
                    backlog: self.buffers,
                })
            }
            Outgoing::Data(_) => None,
        }
    }

    /// Credit the receiver has announced and no buffer has used yet.
    pub fn credit(&self) -> u32 {
        self.credit
    }

    /// Buffers waiting (the output queue's length, a metric).
    pub fn queued(&self) -> u32 {
        self.buffers
    }
}

/// A sender broke the protocol: the connection it came on is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditError {
    /// A buffer arrived on a channel that had no credit.
    NoCredit { channel: usize },
    /// A buffer was consumed that never arrived.
    NotReceived { channel: usize },
}

impl std::fmt::Display for CreditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreditError::NoCredit { channel } => {
                write!(f, "channel {channel} sent a buffer without credit")
            }
            CreditError::NotReceived { channel } => {
                write!(f, "channel {channel}: a buffer consumed that never arrived")
            }
        }
    }
}

impl std::error::Error for CreditError {}

#[derive(Debug, Clone, Copy, Default)]
struct Channel {
    /// Credit announced and not yet used by a buffer.
    credit: u32,
    /// Buffers received and not yet consumed.
    held: u32,
    /// Floating buffers this channel owns (among its credit and held buffers).
    floating: u32,
    /// The sender's backlog, as its last buffer said.
    backlog: u32,
    /// Its stream has opened: credit can reach its sender (none is granted before).
    open: bool,
}

impl Channel {
    /// Buffers the channel owns: credit outstanding and buffers held.
    fn owned(&self) -> u32 {
        self.credit + self.held
    }
}

/// The receiving side of a gate's remote channels.
#[derive(Debug)]
pub struct InputCredits {
    exclusive: u32,
    floating_free: u32,
    channels: Vec<Channel>,
}

impl InputCredits {
    /// `channels` channels with `exclusive` buffers each and `floating` shared ones.
    pub fn new(channels: usize, exclusive: u32, floating: u32) -> Self {
        InputCredits {
            exclusive,
            floating_free: floating,
            channels: vec![Channel::default(); channels],
        }
    }

    /// The initial credit to announce on each channel: its exclusive buffers.
    pub fn start(&mut self) -> Vec<(usize, u32)> {
        (0..self.channels.len())
            .map(|ch| (ch, self.open(ch)))
            .collect()
    }

    /// Channel `channel` opened (its stream arrived): the initial credit to announce on it.
    pub fn open(&mut self, channel: usize) -> u32 {
        let c = &mut self.channels[channel];
        c.open = true;
        let initial = self.exclusive.saturating_sub(c.owned());
        c.credit += initial;
        initial
    }

    /// A buffer arrived on `channel` with the sender's `backlog`; returns credit to announce
    /// (floating buffers granted against the backlog).
    pub fn received(
        &mut self,
        channel: usize,
        backlog: u32,
    ) -> Result<Vec<(usize, u32)>, CreditError> {
        let c = &mut self.channels[channel];
        if c.credit == 0 {
            return Err(CreditError::NoCredit { channel });
        }
        c.credit -= 1;
        c.held += 1;
        c.backlog = backlog;
        Ok(self.grant(channel).into_iter().collect())
    }

    /// The task consumed a buffer of `channel`; returns credit to announce.
    pub fn consumed(&mut self, channel: usize) -> Result<Vec<(usize, u32)>, CreditError> {
        let c = &mut self.channels[channel];
        if c.held == 0 {
            return Err(CreditError::NotReceived { channel });
        }
        c.held -= 1;
        let needed = c.backlog + self.exclusive;
        let mut announce = Vec::new();
        if c.floating > 0 && c.owned() >= needed {
            // A floating buffer it no longer needs goes back to the pool, for whichever channel
            // has the largest uncovered backlog.
            c.floating -= 1;
            self.floating_free += 1;
            if let Some(other) = self.most_wanting() {
                announce.extend(self.grant(other));
            }
        } else {
            c.credit += 1;
            announce.push((channel, 1));
            announce.extend(self.grant(channel));
        }
        Ok(announce)
    }

    /// Grants `channel` floating buffers up to its backlog beyond what it owns.
    fn grant(&mut self, channel: usize) -> Option<(usize, u32)> {
        let c = &mut self.channels[channel];
        let needed = c.backlog + self.exclusive;
        let n = needed.saturating_sub(c.owned()).min(self.floating_free);
        if n == 0 {
            return None;
        }
        self.floating_free -= n;
        c.floating += n;
        c.credit += n;
        Some((channel, n))
    }

    /// The channel whose backlog its buffers cover least, if any is uncovered.
    fn most_wanting(&self) -> Option<usize> {
        (0..self.channels.len())
            .map(|ch| {
                let c = &self.channels[ch];
                (ch, (c.backlog + self.exclusive).saturating_sub(c.owned()))
            })
            .filter(|&(ch, want)| want > 0 && self.channels[ch].open)
            .max_by_key(|&(ch, want)| (want, std::cmp::Reverse(ch)))
            .map(|(ch, _)| ch)
    }

    /// Credit announced on `channel` and not yet used (a metric: available credit).
    pub fn credit(&self, channel: usize) -> u32 {
        self.channels[channel].credit
    }

    /// Buffers held by `channel`, received and not consumed.
    pub fn held(&self, channel: usize) -> u32 {
        self.channels[channel].held
    }

    /// Every buffer the gate owns: exclusive and floating ones.
    pub fn capacity(&self) -> u32 {
        self.exclusive * self.channels.len() as u32
            + self.floating_free
            + self.channels.iter().map(|c| c.floating).sum::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_watermark_replaces_one_still_queued_but_never_passes_data() {
        let mut q: OutputQueue<u32> = OutputQueue::new(2);
        q.push_event_replacing(1, |_| true);
        q.push(100).unwrap();
        q.push_event_replacing(2, |_| true);
        q.push_event_replacing(3, |_| true);
        assert!(matches!(q.next_send(), Some(Send::Event(1))));
        assert!(q.next_send().is_none(), "the buffer waits for credit");
        q.add_credit(1);
        assert!(matches!(
            q.next_send(),
            Some(Send::Data { buffer: 100, .. })
        ));
        assert!(matches!(q.next_send(), Some(Send::Event(3))));
        assert!(q.next_send().is_none());
    }

    #[test]
    fn a_buffer_goes_only_against_credit_and_events_never_overtake_data() {
        let mut q = OutputQueue::new(3);
        q.push("b1").unwrap();
        q.push("b2").unwrap();
        q.push_event("barrier");
        q.push("b3").unwrap();
        assert_eq!(q.push("b4"), Err("b4"), "full: the task waits");
        assert_eq!(q.next_send(), None, "no credit yet");
        q.add_credit(1);
        assert_eq!(
            q.next_send(),
            Some(Send::Data {
                buffer: "b1",
                backlog: 2
            })
        );
        assert_eq!(q.next_send(), None, "the barrier waits behind b2");
        q.add_credit(5);
        assert_eq!(
            q.next_send(),
            Some(Send::Data {
                buffer: "b2",
                backlog: 1
            })
        );
        assert_eq!(q.next_send(), Some(Send::Event("barrier")));
        assert!(q.has_room());
        assert_eq!(
            q.next_send(),
            Some(Send::Data {
                buffer: "b3",
                backlog: 0
            })
        );
        assert_eq!(q.next_send(), None);
        assert_eq!(q.credit(), 3);
    }

    #[test]
    fn floating_buffers_follow_the_backlog_and_return_to_the_pool() {
        let mut g = InputCredits::new(2, 2, 4);
        assert_eq!(g.start(), [(0, 2), (1, 2)]);
        // Channel 0 says 5 more wait behind its buffer: it gets floating credit for them, as far
        // as the pool goes.
        assert_eq!(g.received(0, 5).unwrap(), [(0, 4)]);
        assert_eq!(g.credit(0), 5);
        assert_eq!(g.received(1, 3).unwrap(), [], "the pool is empty");
        // Channel 0 drains: its backlog is 0 now, its floating buffers go back to the pool, and
        // from there to channel 1's backlog.
        for _ in 0..5 {
            g.received(0, 0).unwrap();
        }
        assert_eq!(g.credit(0), 0);
        assert_eq!(
            g.received(0, 0).unwrap_err(),
            CreditError::NoCredit { channel: 0 }
        );
        let mut to_1 = 0;
        for _ in 0..6 {
            for (ch, n) in g.consumed(0).unwrap() {
                if ch == 1 {
                    to_1 += n;
                }
            }
        }
        assert_eq!(
            to_1, 3,
            "channel 1's backlog of 3 covered from the returned buffers"
        );
        assert_eq!(g.capacity(), 8);
        assert_eq!(g.credit(0), 2, "its exclusive buffers announced again");
        assert_eq!(
            g.consumed(0).unwrap_err(),
            CreditError::NotReceived { channel: 0 }
        );
    }

    #[test]
    fn a_channel_not_yet_open_is_granted_nothing() {
        let mut g = InputCredits::new(2, 2, 2);
        assert_eq!(g.open(0), 2);
        assert_eq!(g.received(0, 2).unwrap(), [(0, 2)]);
        g.received(0, 0).unwrap();
        // Channel 0 returns its floating buffers; channel 1, not open, must not get them
        // (its sender could never hear of them).
        let mut granted = Vec::new();
        for _ in 0..2 {
            granted.extend(g.consumed(0).unwrap());
        }
        assert!(granted.iter().all(|&(ch, _)| ch == 0), "{granted:?}");
        assert_eq!(g.open(1), 2, "its full initial credit when it opens");
    }

    /// Senders and a receiving gate driven in a seeded random order: every buffer arrives once,
    /// in order; what a gate holds and has promised never exceeds its buffers; nothing stalls
    /// while there is work (every sender with a backlog eventually gets credit).
    #[test]
    fn a_random_run_delivers_everything_in_order_within_the_gate_s_buffers() {
        for seed in 1..50u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut rand = move |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let channels = 1 + rand(4) as usize;
            let (exclusive, floating) = (1 + rand(3) as u32, rand(5) as u32);
            let mut gate = InputCredits::new(channels, exclusive, floating);
            let mut senders: Vec<OutputQueue<u32>> =
                (0..channels).map(|_| OutputQueue::new(4)).collect();
            let total = 200u32;
            let mut next = vec![0u32; channels];
            // In flight sender -> receiver (frames), receiver -> sender (credit), and held.
            let mut wire: Vec<VecDeque<(u32, u32)>> = vec![VecDeque::new(); channels];
            let mut credit_wire: Vec<VecDeque<u32>> = vec![VecDeque::new(); channels];
            let mut held: Vec<VecDeque<u32>> = vec![VecDeque::new(); channels];
            let mut got = vec![0u32; channels];
            for (ch, n) in gate.start() {
                credit_wire[ch].push_back(n);
            }
            let mut steps = 0;
            while got.iter().any(|&g| g < total) {
                steps += 1;
                assert!(steps < 100_000, "seed {seed}: stalled at {got:?}");
                let ch = rand(channels as u64) as usize;
                match rand(5) {
                    0 => {
                        if next[ch] < total && senders[ch].push(next[ch]).is_ok() {
                            next[ch] += 1;
                        }
                    }
                    1 => {
                        if let Some(Send::Data { buffer, backlog }) = senders[ch].next_send() {
                            wire[ch].push_back((buffer, backlog));
                        }
                    }
                    2 => {
                        if let Some((b, backlog)) = wire[ch].pop_front() {
                            for (c, n) in gate.received(ch, backlog).unwrap() {
                                credit_wire[c].push_back(n);
                            }
                            held[ch].push_back(b);
                        }
                    }
                    3 => {
                        if let Some(b) = held[ch].pop_front() {
                            assert_eq!(b, got[ch], "seed {seed}: in order, once");
                            got[ch] += 1;
                            for (c, n) in gate.consumed(ch).unwrap() {
                                credit_wire[c].push_back(n);
                            }
                        }
                    }
                    _ => {
                        while let Some(n) = credit_wire[ch].pop_front() {
                            senders[ch].add_credit(n);
                        }
                    }
                }
                let promised: u32 = (0..channels)
                    .map(|c| {
                        senders[c].credit()
                            + credit_wire[c].iter().sum::<u32>()
                            + wire[c].len() as u32
                            + held[c].len() as u32
                    })
                    .sum();
                assert!(
                    promised <= exclusive * channels as u32 + floating,
                    "seed {seed}: {promised} buffers promised or held"
                );
                assert_eq!(gate.capacity(), exclusive * channels as u32 + floating);
            }
        }
    }
}
