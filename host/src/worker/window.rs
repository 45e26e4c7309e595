//! The window operator as a step of a task: [`WindowOperator`] decides which window a record
//! goes into and when windows fire and are dropped; the window function (a component)
//! computes; the function instance's keyed state keeps every window, so windows are
//! checkpointed, restored and moved with their keys on rescale like any keyed state.
//!
//! A window holds an accumulator (aggregate and reduce functions), or its records (process
//! functions, and count windows that evict). Accumulators are folded in one call per batch: the
//! function gets the batch as it came, the accumulators of the (key, window) groups its records
//! go into, and which record goes into which group; a window that has to fire in the middle of
//! the batch (a late record, or a count reached) makes the records before it be added first.
//!
//! Triggers: by default a window fires when time passes its end (the watermark, or the clock
//! for processing time); with a count trigger every `n` records of the window instead, and time
//! only drops it. Count windows are Flink's: a global window per key firing every `slide`
//! records, emptied after firing when `slide == size`, else keeping the newest `size` records.

use crate::plan::{TimeKind, WindowAssigner, WindowFunctionKind, WindowNode, WindowTrigger};
use crate::state::StateAccessError;
use crate::time::{Action, Assigner, RecordAction, Window, WindowOperator, watermark};
use crate::wasm::{GuestError, Outputs, WindowInstance, now_ms};
use weir_batch::{Record, lengths};

/// The map state holding each key's windows: the map key is the window (see [`window_key`]),
/// the value a flag byte (1: the window has fired), the number of records it took (u64 LE)
/// and its accumulator (empty when it keeps its records).
pub const WINDOWS_STATE: &str = "weir:windows";
/// The map state holding the records of windows that keep them: the map key is the window
/// and the record's number in it (u64 BE), the value the record.
pub const RECORDS_STATE: &str = "weir:window-records";

/// Why the step failed.
#[derive(Debug)]
pub enum WindowError {
    Guest(GuestError),
    Failed(String),
}

impl From<GuestError> for WindowError {
    fn from(e: GuestError) -> Self {
        WindowError::Guest(e)
    }
}

impl From<StateAccessError> for WindowError {
    fn from(e: StateAccessError) -> Self {
        WindowError::Failed(format!("window state: {e}"))
    }
}

/// A window as kept in [`WINDOWS_STATE`].
#[derive(Debug, Default)]
struct Stored {
    fired: bool,
    count: u64,
    acc: Vec<u8>,
}

impl Stored {
    fn decode(v: &[u8]) -> Result<Self, WindowError> {
        let (head, acc) = v.split_at_checked(9).ok_or_else(|| {
            WindowError::Failed("window state holds a window that cannot be read".into())
        })?;
        Ok(Stored {
            fired: head[0] == 1,
            count: u64::from_le_bytes(head[1..9].try_into().expect("8 bytes")),
            acc: acc.to_vec(),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + self.acc.len());
        v.push(u8::from(self.fired));
        v.extend_from_slice(&self.count.to_le_bytes());
        v.extend_from_slice(&self.acc);
        v
    }
}

/// The records of one (key, window) gathered from a batch and not yet added.
struct Group {
    key: Vec<u8>,
    window: Window,
    /// Records the window had taken before this batch's.
    base: u64,
    added: u64,
}

pub struct WindowStep {
    logic: WindowOperator<Vec<u8>>,
    function: WindowInstance,
    kind: WindowFunctionKind,
    late_output: Option<String>,
    time: TimeKind,
    /// Records need timestamps (not in global and count windows).
    needs_timestamps: bool,
    /// Fire every this many records of a window (a count trigger, count windows).
    every: Option<u64>,
    /// Empty a window after it fired (tumbling count windows).
    purge_on_fire: bool,
    /// Before firing, keep only a window's newest records, this many (sliding count windows).
    keep: Option<u64>,
    /// Windows keep their records rather than an accumulator.
    keep_records: bool,
    groups: Vec<Group>,
    /// Where each (window, key) is in `groups`.
    index: Index,
    /// (record index, group index) pairs: which record goes into which group.
    pairs: Vec<u32>,
    /// What the record being handled makes the step do.
    actions: Vec<RecordAction>,
    /// Results of windows that fired, a batch for the main output.
    out: Vec<u8>,
    /// Records late for all their windows, for the late output.
    late: Vec<u8>,
    /// Late records dropped for want of a late output.
    pub dropped: u64,
}

type Index = hashbrown::HashMap<
    Window,
    hashbrown::HashMap<Vec<u8>, u32, foldhash::fast::RandomState>,
    foldhash::fast::RandomState,
>;

/// The window as a map key: start and end, big endian with the sign bit flipped, so that map
/// keys sort as windows do.
pub fn window_key(w: &Window) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&((w.start as u64) ^ (1 << 63)).to_be_bytes());
    k[8..].copy_from_slice(&((w.end as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn window_of(key: &[u8]) -> Option<Window> {
    let k: &[u8; 16] = key.try_into().ok()?;
    let half = |b: &[u8]| (u64::from_be_bytes(b.try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
    Some(Window {
        start: half(&k[..8]),
        end: half(&k[8..]),
    })
}

/// The assigner a window node names.
pub fn assigner(a: &WindowAssigner) -> Assigner {
    match *a {
        WindowAssigner::Tumbling { size, offset } => Assigner::Tumbling { size, offset },
        WindowAssigner::Sliding {
            size,
            slide,
            offset,
        } => Assigner::Sliding {
            size,
            slide,
            offset,
        },
        WindowAssigner::Session { gap } => Assigner::Session { gap },
        WindowAssigner::Global | WindowAssigner::Count { .. } => Assigner::Global,
    }
}

/// A record's number in its window, after the window, as a map key of [`RECORDS_STATE`].
fn record_key(w: &Window, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&window_key(w));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl WindowStep {
    pub fn new(node: &WindowNode, function: WindowInstance) -> Result<Self, String> {
        let assigner = assigner(&node.assigner);
        assigner.check()?;
        let (every, purge_on_fire, keep) = match (node.assigner, node.trigger) {
            (WindowAssigner::Count { size, slide }, _) => {
                (Some(slide), slide == size, (slide != size).then_some(size))
            }
            (_, WindowTrigger::Count(n)) => (Some(n), false, None),
            (_, WindowTrigger::Default | WindowTrigger::Continuous(_)) => (None, false, None),
        };
        let mut logic = WindowOperator::new(assigner, node.allowed_lateness);
        if every.is_some() {
            logic = logic.without_time_firing();
        }
        if let WindowTrigger::Continuous(interval) = node.trigger {
            logic = logic.firing_every(interval);
        }
        Ok(WindowStep {
            logic,
            function,
            kind: node.kind,
            late_output: node.late_output.clone(),
            time: node.time,
            needs_timestamps: !matches!(assigner, Assigner::Global),
            every,
            purge_on_fire,
            keep,
            keep_records: node.kind == WindowFunctionKind::Process || keep.is_some(),
            groups: Vec::new(),
            index: Index::default(),
            pairs: Vec::new(),
            actions: Vec::new(),
            out: Vec::new(),
            late: Vec::new(),
            dropped: 0,
        })
    }

    /// The function's instance, whose keyed state holds the windows.
    pub fn instance(&mut self) -> &mut WindowInstance {
        &mut self.function
    }

    /// After the keyed state was restored: takes back every window in it, with its timers.
    pub fn restored(&mut self) -> Result<(), WindowError> {
        let entries = self.function.keyed_state().all_map_entries(WINDOWS_STATE)?;
        for (key, mk, value) in entries {
            let window = window_of(&mk).ok_or_else(|| {
                WindowError::Failed("the checkpoint holds a window that cannot be read".into())
            })?;
            let stored = Stored::decode(&value)?;
            self.logic.restore(key, window, stored.fired);
        }
        Ok(())
    }

    /// Takes a batch of records.
    pub fn process(&mut self, batch: &[u8]) -> Result<Outputs, WindowError> {
        let now = (self.time == TimeKind::Processing).then(now_ms);
        let mut records = weir_batch::iter(batch);
        let mut index = 0u32;
        while let Some(next) = records.next_raw() {
            let (record, raw) =
                next.map_err(|e| WindowError::Failed(format!("received a malformed batch: {e}")))?;
            let ts = match (now, record.timestamp) {
                (Some(now), _) => now,
                (None, Some(ts)) => ts,
                (None, None) if !self.needs_timestamps => 0,
                (None, None) => {
                    return Err(WindowError::Failed(
                        "a record without a timestamp reached an event-time window: set `timestamp` on the source of its stream".into(),
                    ));
                }
            };
            let mut actions = std::mem::take(&mut self.actions);
            actions.clear();
            self.logic.on_record(record.key, ts, &mut actions);
            for action in actions.drain(..) {
                match action {
                    RecordAction::Add(window) => {
                        let count = self.gather(record.key, window, index, raw)?;
                        if let Some(n) = self.every
                            && count % n == 0
                        {
                            self.add_gathered(batch)?;
                            self.fire(&[(record.key.to_vec(), window)])?;
                            if self.purge_on_fire {
                                self.purge(record.key, &window)?;
                            }
                        }
                    }
                    RecordAction::Fire(window) => {
                        self.add_gathered(batch)?;
                        self.fire(&[(record.key.to_vec(), window)])?;
                    }
                    RecordAction::Merge { into, from } => {
                        if !self.retarget(record.key, into, &from) {
                            self.add_gathered(batch)?;
                        }
                        self.merge(record.key, into, &from)?;
                    }
                    RecordAction::Late => match self.late_output {
                        Some(_) => self.late.extend_from_slice(raw),
                        None => self.dropped += 1,
                    },
                }
            }
            self.actions = actions;
            index += 1;
        }
        self.add_gathered(batch)?;
        Ok(self.outputs())
    }

    /// The watermark advanced: event-time windows fire and are dropped.
    pub fn on_watermark(&mut self, wm: i64) -> Result<Outputs, WindowError> {
        if self.time == TimeKind::Processing {
            return Ok(Outputs::new());
        }
        self.advance(wm)
    }

    /// When the clock next makes a processing-time window fire or drop (ms since the epoch).
    pub fn next_clock_timer(&self) -> Option<i64> {
        (self.time == TimeKind::Processing)
            .then(|| self.logic.next_timer())
            .flatten()
    }

    /// The clock reached `now`: processing-time windows fire and are dropped.
    pub fn on_clock(&mut self, now: i64) -> Result<Outputs, WindowError> {
        if self.time != TimeKind::Processing {
            return Ok(Outputs::new());
        }
        self.advance(now)
    }

    fn advance(&mut self, time: i64) -> Result<Outputs, WindowError> {
        let mut fires = Vec::new();
        let mut purges = Vec::new();
        for action in self.logic.on_watermark(time) {
            match action {
                Action::Fire { key, window } => fires.push((key, window)),
                Action::Purge { key, window } => purges.push((key, window)),
            }
        }
        // Timers come in time order, and a window fires before it is dropped: fire every
        // window first, then drop.
        self.fire(&fires)?;
        for (key, window) in purges {
            self.purge(&key, &window)?;
        }
        Ok(self.outputs())
    }

    /// The end of input: every window left fires, as Flink's bounded inputs end with the
    /// largest watermark (a processing-time window too, rather than never).
    pub fn close(&mut self) -> Result<Outputs, WindowError> {
        self.advance(watermark::MAX)
    }

    fn outputs(&mut self) -> Outputs {
        let mut outputs = Outputs::new();
        if !self.out.is_empty() {
            outputs.push((None, std::mem::take(&mut self.out)));
        }
        if let Some(name) = &self.late_output
            && !self.late.is_empty()
        {
            outputs.push((Some(name.clone()), std::mem::take(&mut self.late)));
        }
        outputs
    }

    fn stored(&mut self, key: &[u8], window: &Window) -> Result<Option<Stored>, WindowError> {
        (self.function.keyed_state())
            .map_get(WINDOWS_STATE, key, &window_key(window))?
            .map(|v| Stored::decode(&v))
            .transpose()
    }

    fn store(&mut self, key: Vec<u8>, window: &Window, s: &Stored) -> Result<(), WindowError> {
        self.function.keyed_state().map_put(
            WINDOWS_STATE,
            key,
            window_key(window).to_vec(),
            s.encode(),
        )?;
        Ok(())
    }

    /// Notes that record `record` of the batch (`raw`) goes into `window` of `key` (a window
    /// that keeps its records stores it at once); how many records the window has taken now.
    fn gather(
        &mut self,
        key: &[u8],
        window: Window,
        record: u32,
        raw: &[u8],
    ) -> Result<u64, WindowError> {
        let keys = self.index.entry(window).or_default();
        let group = match keys.get(key) {
            Some(&g) => g,
            None => {
                let g = self.groups.len() as u32;
                keys.insert(key.to_vec(), g);
                // What the window took before matters to counts and record numbers only.
                let base = if self.every.is_some() || self.keep_records {
                    self.stored(key, &window)?.map_or(0, |s| s.count)
                } else {
                    0
                };
                self.groups.push(Group {
                    key: key.to_vec(),
                    window,
                    base,
                    added: 0,
                });
                g
            }
        };
        let g = &mut self.groups[group as usize];
        let seq = g.base + g.added;
        g.added += 1;
        if self.keep_records {
            self.function.keyed_state().map_put(
                RECORDS_STATE,
                key.to_vec(),
                record_key(&window, seq),
                raw.to_vec(),
            )?;
        } else {
            self.pairs.extend([record, group]);
        }
        Ok(seq + 1)
    }

    /// Sessions of `key` merge into `into`: the records gathered for one of them and not yet
    /// added go into `into` instead, once merged (no call of the function per merge, which a
    /// session that grows with every record would otherwise cost). `false` when that cannot be
    /// done (windows that keep their records or count, or several merged sessions with
    /// gathered records): the caller adds what was gathered first.
    fn retarget(&mut self, key: &[u8], into: Window, from: &[Window]) -> bool {
        if self.keep_records || self.every.is_some() {
            return false;
        }
        let mut pending = from
            .iter()
            .filter_map(|w| Some((*w, *self.index.get(w)?.get(key)?)));
        let Some((window, group)) = pending.next() else {
            return true;
        };
        if pending.next().is_some() {
            return false;
        }
        if let Some(keys) = self.index.get_mut(&window) {
            keys.remove(key);
        }
        self.index
            .entry(into)
            .or_default()
            .insert(key.to_vec(), group);
        self.groups[group as usize].window = into;
        true
    }

    /// Adds the gathered records of `batch` to their windows: folds them into the
    /// accumulators in one call, or (windows that keep their records) counts them.
    fn add_gathered(&mut self, batch: &[u8]) -> Result<(), WindowError> {
        if self.groups.is_empty() {
            return Ok(());
        }
        let groups = std::mem::take(&mut self.groups);
        self.index.clear();
        let mut current = Vec::with_capacity(groups.len());
        for g in &groups {
            current.push(self.stored(&g.key, &g.window)?.unwrap_or_default());
        }
        if !self.keep_records {
            let mut accumulators = Vec::new();
            for s in &current {
                let acc = (s.count > 0).then_some(s.acc.as_slice());
                lengths::push(&mut accumulators, acc);
            }
            let reply = self.function.add(&accumulators, batch, &self.pairs)?;
            self.pairs.clear();
            for (s, acc) in current.iter_mut().zip(items(&reply, groups.len(), "add")?) {
                s.acc = acc.to_vec();
            }
        }
        for (g, mut s) in groups.into_iter().zip(current) {
            s.count += g.added;
            self.store(g.key, &g.window, &s)?;
        }
        Ok(())
    }

    /// The records a window keeps, in the order it took them (evicting the oldest beyond
    /// `keep` first).
    fn records_of(&mut self, key: &[u8], window: &Window) -> Result<Vec<Vec<u8>>, WindowError> {
        let prefix = window_key(window);
        let state = self.function.keyed_state();
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = state
            .map_entries(RECORDS_STATE, key)?
            .into_iter()
            .filter(|(mk, _)| mk.starts_with(&prefix))
            .collect();
        entries.sort();
        if let Some(keep) = self.keep {
            let evict = entries.len().saturating_sub(keep as usize);
            for (mk, _) in entries.drain(..evict) {
                state.map_remove(RECORDS_STATE, key, &mk)?;
            }
        }
        Ok(entries.into_iter().map(|(_, r)| r).collect())
    }

    /// Emits the results of `windows` and marks them fired.
    fn fire(&mut self, windows: &[(Vec<u8>, Window)]) -> Result<(), WindowError> {
        let mut present = Vec::with_capacity(windows.len());
        for (key, window) in windows {
            if let Some(s) = self.stored(key, window)? {
                present.push((key, window, s));
            }
        }
        if present.is_empty() {
            return Ok(());
        }
        if self.kind == WindowFunctionKind::Process {
            self.fire_process(&present)?;
        } else {
            if self.keep_records {
                // Fold each window's records from nothing, one group per window.
                let (mut records, mut pairs, mut accumulators) =
                    (Vec::new(), Vec::new(), Vec::new());
                let mut n = 0u32;
                for (g, (key, window, _)) in present.iter().enumerate() {
                    lengths::push(&mut accumulators, None);
                    for r in self.records_of(key, window)? {
                        records.extend_from_slice(&r);
                        pairs.extend([n, g as u32]);
                        n += 1;
                    }
                }
                let reply = self.function.add(&accumulators, &records, &pairs)?;
                let accs = items(&reply, present.len(), "add")?;
                for (p, acc) in present.iter_mut().zip(accs) {
                    p.2.acc = acc.to_vec();
                }
            }
            let mut request = Vec::new();
            if self.kind == WindowFunctionKind::Aggregate {
                for (key, window, s) in &present {
                    lengths::push(&mut request, Some(key));
                    request.extend_from_slice(&window.start.to_le_bytes());
                    request.extend_from_slice(&window.end.to_le_bytes());
                    lengths::push(&mut request, Some(&s.acc));
                }
            }
            let reply = match self.kind {
                WindowFunctionKind::Aggregate => self.function.result(&request)?,
                _ => Vec::new(),
            };
            let results = match self.kind {
                WindowFunctionKind::Aggregate => items(&reply, present.len(), "get-result")?,
                // A reduced window's result is its value.
                _ => present.iter().map(|(_, _, s)| s.acc.as_slice()).collect(),
            };
            for ((key, window, _), value) in present.iter().zip(&results) {
                weir_batch::push(
                    &mut self.out,
                    &Record {
                        key,
                        value,
                        timestamp: Some(window.max_timestamp()),
                    },
                );
            }
        }
        for (key, window, mut s) in present {
            if !s.fired {
                s.fired = true;
                if self.keep_records {
                    s.acc.clear();
                }
                self.store(key.clone(), window, &s)?;
            }
        }
        Ok(())
    }

    /// Hands whole windows to a process function; what it emits for each goes out with the
    /// window's end - 1 as the timestamp of records that have none.
    fn fire_process(&mut self, present: &[(&Vec<u8>, &Window, Stored)]) -> Result<(), WindowError> {
        let mut request = Vec::new();
        for (key, window, _) in present {
            lengths::push(&mut request, Some(key));
            request.extend_from_slice(&window.start.to_le_bytes());
            request.extend_from_slice(&window.end.to_le_bytes());
            let records = self.records_of(key, window)?;
            request.extend_from_slice(&(records.len() as u32).to_le_bytes());
            for r in &records {
                request.extend_from_slice(r);
            }
        }
        let reply = self.function.process_windows(&request)?;
        for ((_, window, _), batch) in present.iter().zip(items(&reply, present.len(), "process")?)
        {
            for r in weir_batch::iter(batch) {
                let r = r.map_err(|e| {
                    WindowError::Failed(format!("the window function's process emitted a {e}"))
                })?;
                weir_batch::push(
                    &mut self.out,
                    &Record {
                        timestamp: r.timestamp.or(Some(window.max_timestamp())),
                        ..r
                    },
                );
            }
        }
        Ok(())
    }

    /// Merges the contents of windows `from` of `key` into `into` (session windows).
    fn merge(&mut self, key: &[u8], into: Window, from: &[Window]) -> Result<(), WindowError> {
        let mut parts = Vec::new();
        let mut records = Vec::new();
        for w in std::iter::once(&into).chain(from) {
            if let Some(s) = self.stored(key, w)? {
                if self.keep_records {
                    records.extend(self.records_of(key, w)?);
                }
                parts.push(s);
                self.purge(key, w)?;
            }
        }
        let count = parts.iter().map(|s| s.count).sum();
        let acc = if self.keep_records {
            for (seq, r) in records.into_iter().enumerate() {
                self.function.keyed_state().map_put(
                    RECORDS_STATE,
                    key.to_vec(),
                    record_key(&into, seq as u64),
                    r,
                )?;
            }
            Vec::new()
        } else {
            let mut accs: Vec<Vec<u8>> = parts.into_iter().map(|s| s.acc).collect();
            match accs.len() {
                0 => return Ok(()),
                1 => accs.pop().expect("one part"),
                n => {
                    let mut request = Vec::new();
                    let reply = match self.kind {
                        WindowFunctionKind::Aggregate => {
                            request.extend_from_slice(&(n as u32).to_le_bytes());
                            for a in &accs {
                                lengths::push(&mut request, Some(a));
                            }
                            self.function.merge(&request)?
                        }
                        _ => {
                            // A reduce merges by folding the other values into the first.
                            lengths::push(&mut request, Some(&accs[0]));
                            let mut records = Vec::new();
                            let mut pairs = Vec::new();
                            for (i, a) in accs[1..].iter().enumerate() {
                                weir_batch::push(&mut records, &Record::new(key, a));
                                pairs.extend([i as u32, 0]);
                            }
                            self.function.add(&request, &records, &pairs)?
                        }
                    };
                    items(&reply, 1, "merge")?[0].to_vec()
                }
            }
        };
        self.store(
            key.to_vec(),
            &into,
            &Stored {
                fired: false,
                count,
                acc,
            },
        )
    }

    fn purge(&mut self, key: &[u8], window: &Window) -> Result<(), WindowError> {
        let wk = window_key(window);
        let state = self.function.keyed_state();
        state.map_remove(WINDOWS_STATE, key, &wk)?;
        if self.keep_records {
            let entries = state.map_entries(RECORDS_STATE, key)?;
            for (mk, _) in entries.iter().filter(|(mk, _)| mk.starts_with(&wk)) {
                state.map_remove(RECORDS_STATE, key, mk)?;
            }
        }
        Ok(())
    }
}

/// The `n` length-prefixed items a function's `call` returned.
fn items<'a>(reply: &'a [u8], n: usize, call: &str) -> Result<Vec<&'a [u8]>, WindowError> {
    let bad = |why: String| WindowError::Failed(format!("the window function's {call}: {why}"));
    let mut out = Vec::with_capacity(n);
    for item in lengths::iter(reply) {
        match item.map_err(|e| bad(format!("a malformed reply: {e}")))? {
            Some(bytes) => out.push(bytes),
            None => return Err(bad("returned no value for a window".into())),
        }
    }
    if out.len() != n {
        return Err(bad(format!(
            "returned {} values for {n} windows",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_sort_as_windows_and_read_back() {
        let ws = [
            Window {
                start: -20,
                end: -10,
            },
            Window { start: -10, end: 0 },
            Window { start: 0, end: 10 },
            Window { start: 0, end: 20 },
            Window {
                start: i64::MAX - 5,
                end: i64::MAX,
            },
        ];
        let keys: Vec<[u8; 16]> = ws.iter().map(window_key).collect();
        assert!(keys.windows(2).all(|k| k[0] < k[1]));
        for (w, k) in ws.iter().zip(&keys) {
            assert_eq!(window_of(k), Some(*w));
        }
        assert_eq!(window_of(&[0; 3]), None);
    }
}
