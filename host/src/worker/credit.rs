//! Credit accounting of one input gate, as Flink's credit-based flow control (>= 1.5): each
//! channel owns a few exclusive buffers (its initial credit) and the gate a shared pool of
//! floating buffers. A sender may send a buffer only against credit; a channel with a backlog
//! beyond its exclusive buffers borrows floating ones. A consumed buffer returns its credit.
//! Pure bookkeeping: the channel drivers (in-process here, QUIC later) sit around it.

/// Credit state of every channel of a gate.
#[derive(Clone, Debug)]
pub struct Credits {
    exclusive: u32,
    floating_free: u32,
    channels: Vec<ChannelCredit>,
}

#[derive(Clone, Copy, Debug, Default)]
struct ChannelCredit {
    exclusive_used: u32,
    floating_used: u32,
}

impl Credits {
    /// `channels` channels with `exclusive` buffers each, sharing `floating` more.
    pub fn new(channels: usize, exclusive: u32, floating: u32) -> Self {
        Credits {
            exclusive,
            floating_free: floating,
            channels: vec![ChannelCredit::default(); channels],
        }
    }

    /// Takes one credit for `channel`'s next buffer, if there is any: exclusive first, then
    /// floating. `false` means the sender must wait (backpressure).
    pub fn try_acquire(&mut self, channel: usize) -> bool {
        let c = &mut self.channels[channel];
        if c.exclusive_used < self.exclusive {
            c.exclusive_used += 1;
            true
        } else if self.floating_free > 0 {
            self.floating_free -= 1;
            c.floating_used += 1;
            true
        } else {
            false
        }
    }

    /// Returns the credit of a buffer of `channel` the receiver has consumed; floating buffers go
    /// back to the pool first, so one busy channel does not keep them.
    pub fn release(&mut self, channel: usize) {
        let c = &mut self.channels[channel];
        if c.floating_used > 0 {
            c.floating_used -= 1;
            self.floating_free += 1;
        } else {
            debug_assert!(c.exclusive_used > 0, "released more buffers than were sent");
            c.exclusive_used = c.exclusive_used.saturating_sub(1);
        }
    }

    /// Buffers of `channel` sent but not yet consumed.
    pub fn in_flight(&self, channel: usize) -> u32 {
        let c = &self.channels[channel];
        c.exclusive_used + c.floating_used
    }

    /// The most buffers that can be in flight into this gate at once.
    pub fn capacity(&self) -> u32 {
        self.exclusive * self.channels.len() as u32
            + self.floating_free
            + self.channels.iter().map(|c| c.floating_used).sum::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_then_floating_then_backpressure() {
        let mut c = Credits::new(2, 2, 1);
        assert_eq!(c.capacity(), 5);
        assert!(c.try_acquire(0));
        assert!(c.try_acquire(0));
        assert!(c.try_acquire(0), "third buffer borrows the floating one");
        assert!(!c.try_acquire(0), "no credit left: the sender waits");
        assert!(c.try_acquire(1) && c.try_acquire(1));
        assert!(
            !c.try_acquire(1),
            "the floating buffer is taken by channel 0"
        );
        assert_eq!(c.in_flight(0), 3);
        c.release(0);
        assert!(
            c.try_acquire(1),
            "channel 0 returned the floating buffer first"
        );
        assert_eq!(c.in_flight(0), 2);
        assert_eq!(c.capacity(), 5);
    }

    #[test]
    fn in_flight_never_exceeds_capacity() {
        let mut c = Credits::new(3, 2, 4);
        let mut sent = 0;
        for round in 0..1000usize {
            let ch = round * 7 % 3;
            if c.try_acquire(ch) {
                sent += 1;
            } else if c.in_flight(ch) > 0 {
                c.release(ch);
                sent -= 1;
            }
            let total: u32 = (0..3).map(|i| c.in_flight(i)).sum();
            assert_eq!(total, sent);
            assert!(total <= c.capacity());
        }
    }
}
