//! Window assignment, as Flink's assigners: which windows a record of timestamp `ts` belongs to
//! (tumbling, sliding, session, global), and how session windows merge. Windows are half-open
//! intervals `[start, end)` of milliseconds; a window's results carry `end - 1`, its largest
//! timestamp.

use smallvec::SmallVec;

/// A time window `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The one window of the global assigner: every record, never over.
    pub const GLOBAL: Window = Window {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// Its largest timestamp, `end - 1`: an event-time window fires when the watermark
    /// reaches it.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// Whether the two overlap or touch (session windows that do are merged, as Flink's
    /// `TimeWindow.intersects`).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// How records are assigned to windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assigner {
    /// Windows of `size` ms, one after the other, aligned on `offset`.
    Tumbling { size: i64, offset: i64 },
    /// Windows of `size` ms starting every `slide` ms: a record is in `size / slide` of them
    /// (windows that start before 0 included).
    Sliding { size: i64, slide: i64, offset: i64 },
    /// A window of `gap` ms from each record, merged with those it overlaps or touches.
    Session { gap: i64 },
    /// One window for everything.
    Global,
}

/// The windows of one record: most assigners give one, a sliding one `size / slide`.
pub type Windows = SmallVec<[Window; 4]>;

/// The start of the window of `size` (aligned on `offset`) holding `ts`, for any `ts`.
pub fn window_start(ts: i64, offset: i64, size: i64) -> i64 {
    ts.saturating_sub(ts.wrapping_sub(offset).rem_euclid(size))
}

impl Assigner {
    /// Whether the assigner makes sense: positive sizes, a slide not larger than the size, an
    /// offset smaller than the size (or the slide).
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Assigner::Tumbling { size, offset } => {
                if size <= 0 {
                    return Err("a tumbling window's size must be positive".into());
                }
                if offset.abs() >= size {
                    return Err(format!(
                        "the offset {offset} ms is not within the size {size} ms"
                    ));
                }
            }
            Assigner::Sliding {
                size,
                slide,
                offset,
            } => {
                if size <= 0 || slide <= 0 {
                    return Err("a sliding window's size and slide must be positive".into());
                }
                if slide > size {
                    return Err(format!(
                        "the slide ({slide} ms) is larger than the size ({size} ms): records between windows would be in none"
                    ));
                }
                if offset.abs() >= slide {
                    return Err(format!(
                        "the offset {offset} ms is not within the slide {slide} ms"
                    ));
                }
            }
            Assigner::Session { gap } => {
                if gap <= 0 {
                    return Err("a session window's gap must be positive".into());
                }
            }
            Assigner::Global => {}
        }
        Ok(())
    }

    /// Whether its windows merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, Assigner::Session { .. })
    }

    /// The windows a record of timestamp `ts` belongs to.
    pub fn assign(&self, ts: i64) -> Windows {
        let mut out = Windows::new();
        match *self {
            Assigner::Tumbling { size, offset } => {
                let start = window_start(ts, offset, size);
                out.push(Window {
                    start,
                    end: start.saturating_add(size),
                });
            }
            Assigner::Sliding {
                size,
                slide,
                offset,
            } => {
                // The newest window holding `ts` always does (it starts after `ts - slide`);
                // older ones while they still reach it.
                let mut start = window_start(ts, offset, slide);
                loop {
                    out.push(Window {
                        start,
                        end: start.saturating_add(size),
                    });
                    let older = start.saturating_sub(slide);
                    if older <= ts.saturating_sub(size) || older == start {
                        break;
                    }
                    start = older;
                }
            }
            Assigner::Session { gap } => out.push(Window {
                start: ts,
                end: ts.saturating_add(gap),
            }),
            Assigner::Global => out.push(Window::GLOBAL),
        }
        out
    }
}

/// Session windows merged: `windows` (in any order) as the windows they make once every two
/// that overlap or touch are one, each with the windows it was made of, by start. As Flink's
/// `TimeWindow.mergeWindows`.
pub fn merge(windows: &[Window]) -> Vec<(Window, Vec<Window>)> {
    let mut sorted = windows.to_vec();
    sorted.sort();
    let mut merged: Vec<(Window, Vec<Window>)> = Vec::new();
    for w in sorted {
        match merged.last_mut() {
            Some((cover, parts)) if cover.intersects(&w) => {
                *cover = cover.cover(&w);
                parts.push(w);
            }
            _ => merged.push((w, vec![w])),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn tumbling_windows_hold_their_timestamps_negative_ones_too() {
        let a = Assigner::Tumbling {
            size: 10,
            offset: 0,
        };
        assert_eq!(a.assign(0).as_slice(), [w(0, 10)]);
        assert_eq!(a.assign(9).as_slice(), [w(0, 10)]);
        assert_eq!(a.assign(10).as_slice(), [w(10, 20)]);
        assert_eq!(a.assign(-1).as_slice(), [w(-10, 0)]);
        assert_eq!(a.assign(-10).as_slice(), [w(-10, 0)]);
        assert_eq!(w(0, 10).max_timestamp(), 9);
        let shifted = Assigner::Tumbling {
            size: 10,
            offset: 3,
        };
        assert_eq!(shifted.assign(2).as_slice(), [w(-7, 3)]);
        assert_eq!(shifted.assign(3).as_slice(), [w(3, 13)]);
    }

    #[test]
    fn sliding_windows_include_those_that_start_before_zero() {
        let a = Assigner::Sliding {
            size: 10,
            slide: 5,
            offset: 0,
        };
        // Newest first, as Flink lists them.
        assert_eq!(a.assign(0).as_slice(), [w(0, 10), w(-5, 5)]);
        assert_eq!(a.assign(7).as_slice(), [w(5, 15), w(0, 10)]);
        assert_eq!(a.assign(10).as_slice(), [w(10, 20), w(5, 15)]);
        let thirds = Assigner::Sliding {
            size: 9,
            slide: 3,
            offset: 0,
        };
        assert_eq!(thirds.assign(4).len(), 3);
        let same = Assigner::Sliding {
            size: 5,
            slide: 5,
            offset: 0,
        };
        assert_eq!(same.assign(4).as_slice(), [w(0, 5)]);
    }

    #[test]
    fn sessions_merge_when_they_overlap_or_touch() {
        let a = Assigner::Session { gap: 10 };
        assert_eq!(a.assign(5).as_slice(), [w(5, 15)]);
        assert!(a.is_merging());
        // [0,10) and [10,20) touch: one session; [25,35) stands alone.
        let m = merge(&[w(25, 35), w(10, 20), w(0, 10)]);
        assert_eq!(
            m,
            vec![
                (w(0, 20), vec![w(0, 10), w(10, 20)]),
                (w(25, 35), vec![w(25, 35)])
            ]
        );
        // A record between two sessions bridges them.
        let m = merge(&[w(0, 20), w(25, 35), w(18, 28)]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, w(0, 35));
        assert_eq!(m[0].1.len(), 3);
    }

    #[test]
    fn global_and_bad_assigners() {
        assert_eq!(Assigner::Global.assign(-5).as_slice(), [Window::GLOBAL]);
        assert_eq!(Window::GLOBAL.max_timestamp(), i64::MAX - 1);
        for bad in [
            Assigner::Tumbling { size: 0, offset: 0 },
            Assigner::Tumbling { size: 5, offset: 5 },
            Assigner::Sliding {
                size: 5,
                slide: 10,
                offset: 0,
            },
            Assigner::Sliding {
                size: 5,
                slide: 0,
                offset: 0,
            },
            Assigner::Session { gap: 0 },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(
            Assigner::Sliding {
                size: 10,
                slide: 5,
                offset: 1
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let a = Assigner::Tumbling {
            size: 1000,
            offset: 0,
        };
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            let ws = a.assign(ts);
            // (At the very ends of time, windows are cut short rather than overflow.)
            assert!(ws[0].start <= ts && ws[0].start < ws[0].end, "{ts}: {ws:?}");
        }
        let s = Assigner::Sliding {
            size: 1000,
            slide: 300,
            offset: 0,
        };
        assert!(!s.assign(i64::MIN + 5).is_empty());
    }
}
