//! What the reference workloads must produce, computed natively from the generator's definition
//! (`examples/bench/README.md`), for any number of records.

use crate::connectors::splitmix::h;

/// Records reaching the sink and the sum the workload defines over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub records: u64,
    pub sum: u64,
}

/// stateless: records `i < n` whose amount `h(12, i) % 10000` is at least 2500, and their sum.
pub fn stateless(n: u64) -> Expected {
    let (mut records, mut sum) = (0, 0);
    for i in 0..n {
        let amount = h(12, i) % 10_000;
        if amount >= 2500 {
            records += 1;
            sum += amount;
        }
    }
    Expected { records, sum }
}

/// wordcount: one record per word of `n` lines; the sum of the running counts emitted, which is
/// `c (c + 1) / 2` for a word seen `c` times.
pub fn wordcount(n: u64) -> Expected {
    let mut counts = vec![0u64; 10_000];
    for i in 0..n {
        for j in 0..8 {
            counts[(h(21, 8 * i + j) % 10_000) as usize] += 1;
        }
    }
    Expected {
        records: 8 * n,
        sum: counts.iter().map(|c| c * (c + 1) / 2).sum(),
    }
}

/// window: one row per (key, 10 s window) that holds a record; their counts add up to `n` (no
/// record is late).
pub fn window(n: u64) -> Expected {
    let windows = ((2000 + n / 10) / 10_000 + 1) as usize;
    let mut seen = vec![false; 1000 * windows];
    let mut rows = 0;
    for i in 0..n {
        let key = (h(31, i) % 1000) as usize;
        let ts = 2000 + i / 10 - h(32, i) % 2001;
        let slot = &mut seen[key * windows + (ts / 10_000) as usize];
        if !*slot {
            *slot = true;
            rows += 1;
        }
    }
    Expected {
        records: rows,
        sum: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_published_figures() {
        assert_eq!(
            stateless(20_000_000),
            Expected {
                records: 15_000_044,
                sum: 93_746_695_837
            }
        );
        assert_eq!(
            wordcount(5_000_000),
            Expected {
                records: 40_000_000,
                sum: 80_039_529_089
            }
        );
        assert_eq!(
            window(25_000_000),
            Expected {
                records: 251_000,
                sum: 25_000_000
            }
        );
        assert_eq!(
            stateless(1),
            Expected { records: 0, sum: 0 },
            "i=0 has amount 323"
        );
    }
}
