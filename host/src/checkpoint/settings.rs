//! A job's checkpoint and restart settings, as the manifest's `[checkpoint]` and `[restart]`
//! tables give them.

use super::coordinator::Schedule;
use std::path::PathBuf;
use std::time::Duration;

/// How barriers are handled at tasks with several input channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Aligned barriers: every record is reflected in the state exactly once.
    ExactlyOnce,
    /// No alignment: after a restore some records may be reflected twice, none lost.
    AtLeastOnce,
}

/// Where a job's working keyed state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Backend {
    /// Hash maps in memory; snapshots are copied out at the barrier.
    Memory,
    /// A redb database on local disk, so state can exceed memory.
    Redb,
}

/// `[checkpoint]`: when checkpoints are taken, how, and where they are kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointSettings {
    pub schedule: Schedule,
    pub mode: Mode,
    /// Completed checkpoints kept.
    pub retain: u32,
    /// Keep them when the job is cancelled or fails for good.
    pub retain_on_cancel: bool,
    /// Write only what changed since the previous checkpoint.
    pub incremental: bool,
    pub backend: Backend,
    /// The job's checkpoint directory.
    pub dir: PathBuf,
}

/// `[restart]`: what happens when a task fails.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RestartStrategy {
    /// Fail the job at the first failure.
    None,
    /// Restart up to `attempts` times, `delay` apart.
    FixedDelay { attempts: u32, delay: Duration },
    /// Restart up to `attempts` times, the delay growing from `initial` by `multiplier` up to
    /// `max`.
    ExponentialDelay {
        attempts: u32,
        initial: Duration,
        max: Duration,
        multiplier: f64,
    },
}

impl RestartStrategy {
    /// The delay before restart `attempt` (1 for the first restart), or `None` when no attempt
    /// is left.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        match *self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => {
                (attempt <= attempts).then_some(delay)
            }
            RestartStrategy::ExponentialDelay {
                attempts,
                initial,
                max,
                multiplier,
            } => (attempt <= attempts).then(|| {
                let factor = multiplier.powi(attempt.saturating_sub(1).min(1000) as i32);
                initial.mul_f64(factor.min(1e9)).min(max)
            }),
        }
    }
}

/// Parses a duration such as `"250ms"`, `"1s"`, `"2m"`, `"1h"` or `"0s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as \"500ms\", \"1s\" or \"2m\""))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "" => return Err(format!("`{text}` needs a unit: ms, s, m or h")),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`; use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_a_number_and_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(
            parse_duration("5 days")
                .unwrap_err()
                .contains("unknown unit `days`")
        );
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn restart_delays_per_strategy() {
        let s = Duration::from_secs;
        assert_eq!(RestartStrategy::None.delay(1), None);
        let fixed = RestartStrategy::FixedDelay {
            attempts: 2,
            delay: s(1),
        };
        assert_eq!(
            (fixed.delay(1), fixed.delay(2), fixed.delay(3)),
            (Some(s(1)), Some(s(1)), None)
        );
        let exp = RestartStrategy::ExponentialDelay {
            attempts: 10,
            initial: s(1),
            max: s(5),
            multiplier: 2.0,
        };
        let delays: Vec<_> = (1..=5).map(|a| exp.delay(a).unwrap()).collect();
        assert_eq!(delays, [s(1), s(2), s(4), s(5), s(5)]);
        assert_eq!(exp.delay(11), None);
    }
}
