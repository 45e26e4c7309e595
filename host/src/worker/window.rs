//! The window operator as a step of a task: [`WindowOperator`] decides which window a record
//! goes into and when windows fire and are dropped; the window function (a component) folds
//! records into accumulators and turns them into results; the function instance's keyed state
//! keeps every window's accumulator, so windows are checkpointed, restored and moved with their
//! keys on rescale like any keyed state.
//!
//! A batch is handled in one call of the function where it can be: the function gets the batch
//! as it came, the accumulators of the (key, window) groups its records go into, and which
//! record goes into which group; a window that has to fire in the middle of the batch (a late
//! record) makes the records before it be added first.

use crate::plan::{WindowAssigner, WindowFunctionKind, WindowNode};
use crate::state::StateAccessError;
use crate::time::{Action, Assigner, RecordAction, Window, WindowOperator, watermark};
use crate::wasm::{GuestError, Outputs, WindowInstance};
use weir_batch::{Record, lengths};

/// The map state holding each key's windows: the map key is the window (see [`window_key`]),
/// the value a flag byte (1: the window has fired) and the accumulator.
pub const WINDOWS_STATE: &str = "windows";

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

pub struct WindowStep {
    logic: WindowOperator<Vec<u8>>,
    function: WindowInstance,
    kind: WindowFunctionKind,
    late_output: Option<String>,
    /// The (key, window) groups of the batch's records not yet added.
    groups: Vec<(Vec<u8>, Window)>,
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
pub fn assigner(a: &WindowAssigner) -> Result<Assigner, String> {
    Ok(match *a {
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
        WindowAssigner::Global => Assigner::Global,
        WindowAssigner::Count { .. } => return Err("count windows are not supported yet".into()),
    })
}

impl WindowStep {
    pub fn new(node: &WindowNode, function: WindowInstance) -> Result<Self, String> {
        let assigner = assigner(&node.assigner)?;
        assigner.check()?;
        Ok(WindowStep {
            logic: WindowOperator::new(assigner, node.allowed_lateness),
            function,
            kind: node.kind,
            late_output: node.late_output.clone(),
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
            self.logic.restore(key, window, value.first() == Some(&1));
        }
        Ok(())
    }

    /// Takes a batch of records.
    pub fn process(&mut self, batch: &[u8]) -> Result<Outputs, WindowError> {
        let mut records = weir_batch::iter(batch);
        let mut index = 0u32;
        while let Some(next) = records.next_raw() {
            let (record, raw) =
                next.map_err(|e| WindowError::Failed(format!("received a malformed batch: {e}")))?;
            let Some(ts) = record.timestamp else {
                return Err(WindowError::Failed(
                    "a record without a timestamp reached an event-time window: set `timestamp` on the source of its stream".into(),
                ));
            };
            let mut actions = std::mem::take(&mut self.actions);
            actions.clear();
            self.logic.on_record(record.key, ts, &mut actions);
            for action in actions.drain(..) {
                match action {
                    RecordAction::Add(window) => self.gather(record.key, window, index),
                    RecordAction::Fire(window) => {
                        self.add_gathered(batch)?;
                        self.fire(&[(record.key.to_vec(), window)])?;
                    }
                    RecordAction::Merge { into, from } => {
                        self.add_gathered(batch)?;
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

    /// The watermark advanced: windows fire and are dropped.
    pub fn on_watermark(&mut self, wm: i64) -> Result<Outputs, WindowError> {
        let mut fires = Vec::new();
        let mut purges = Vec::new();
        for action in self.logic.on_watermark(wm) {
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
    /// largest watermark.
    pub fn close(&mut self) -> Result<Outputs, WindowError> {
        self.on_watermark(watermark::MAX)
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

    /// Notes that record `record` of the batch goes into `window` of `key`.
    fn gather(&mut self, key: &[u8], window: Window, record: u32) {
        let keys = self.index.entry(window).or_default();
        let group = match keys.get(key) {
            Some(&g) => g,
            None => {
                let g = self.groups.len() as u32;
                self.groups.push((key.to_vec(), window));
                keys.insert(key.to_vec(), g);
                g
            }
        };
        self.pairs.extend([record, group]);
    }

    /// Adds the gathered records of `batch` to their windows' accumulators, in one call.
    fn add_gathered(&mut self, batch: &[u8]) -> Result<(), WindowError> {
        if self.groups.is_empty() {
            return Ok(());
        }
        let groups = std::mem::take(&mut self.groups);
        self.index.clear();
        let mut accumulators = Vec::new();
        let mut flags = Vec::with_capacity(groups.len());
        let state = self.function.keyed_state();
        for (key, window) in &groups {
            let current = state.map_get(WINDOWS_STATE, key, &window_key(window))?;
            flags.push(
                current
                    .as_ref()
                    .and_then(|c| c.first().copied())
                    .unwrap_or(0),
            );
            lengths::push(&mut accumulators, current.as_ref().map(|c| &c[1..]));
        }
        let reply = self.function.add(&accumulators, batch, &self.pairs)?;
        self.pairs.clear();
        let replies = items(&reply, groups.len(), "add")?;
        let state = self.function.keyed_state();
        for (((key, window), acc), flag) in groups.into_iter().zip(replies).zip(flags) {
            let mut value = Vec::with_capacity(1 + acc.len());
            value.push(flag);
            value.extend_from_slice(acc);
            state.map_put(WINDOWS_STATE, key, window_key(&window).to_vec(), value)?;
        }
        Ok(())
    }

    /// Emits the results of `windows` and marks them fired.
    fn fire(&mut self, windows: &[(Vec<u8>, Window)]) -> Result<(), WindowError> {
        if windows.is_empty() {
            return Ok(());
        }
        let state = self.function.keyed_state();
        let mut present = Vec::with_capacity(windows.len());
        for (key, window) in windows {
            if let Some(v) = state.map_get(WINDOWS_STATE, key, &window_key(window))? {
                present.push((key, window, v));
            }
        }
        let mut request = Vec::new();
        if self.kind == WindowFunctionKind::Aggregate {
            for (key, window, v) in &present {
                lengths::push(&mut request, Some(key));
                request.extend_from_slice(&window.start.to_le_bytes());
                request.extend_from_slice(&window.end.to_le_bytes());
                lengths::push(&mut request, Some(&v[1..]));
            }
        }
        let reply = match self.kind {
            WindowFunctionKind::Aggregate => self.function.result(&request)?,
            _ => Vec::new(),
        };
        let results = match self.kind {
            WindowFunctionKind::Aggregate => items(&reply, present.len(), "get-result")?,
            // A reduced window's result is its value.
            _ => present.iter().map(|(_, _, v)| &v[1..]).collect(),
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
        drop(results);
        let state = self.function.keyed_state();
        for (key, window, mut v) in present {
            if v[0] != 1 {
                v[0] = 1;
                state.map_put(WINDOWS_STATE, key.clone(), window_key(window).to_vec(), v)?;
            }
        }
        Ok(())
    }

    /// Merges the contents of windows `from` of `key` into `into` (session windows).
    fn merge(&mut self, key: &[u8], into: Window, from: &[Window]) -> Result<(), WindowError> {
        let state = self.function.keyed_state();
        let mut parts = Vec::new();
        for w in std::iter::once(&into).chain(from) {
            let wk = window_key(w);
            if let Some(v) = state.map_get(WINDOWS_STATE, key, &wk)? {
                parts.push(v[1..].to_vec());
                state.map_remove(WINDOWS_STATE, key, &wk)?;
            }
        }
        let merged = match parts.len() {
            0 => return Ok(()),
            1 => parts.pop().expect("one part"),
            n => {
                let mut request = Vec::new();
                let reply = match self.kind {
                    WindowFunctionKind::Aggregate => {
                        request.extend_from_slice(&(n as u32).to_le_bytes());
                        for p in &parts {
                            lengths::push(&mut request, Some(p));
                        }
                        self.function.merge(&request)?
                    }
                    _ => {
                        // A reduce merges by folding the other values into the first.
                        lengths::push(&mut request, Some(&parts[0]));
                        let mut records = Vec::new();
                        let mut pairs = Vec::new();
                        for (i, p) in parts[1..].iter().enumerate() {
                            weir_batch::push(&mut records, &Record::new(key, p));
                            pairs.extend([i as u32, 0]);
                        }
                        self.function.add(&request, &records, &pairs)?
                    }
                };
                items(&reply, 1, "merge")?[0].to_vec()
            }
        };
        let mut value = Vec::with_capacity(1 + merged.len());
        value.push(0);
        value.extend_from_slice(&merged);
        self.function.keyed_state().map_put(
            WINDOWS_STATE,
            key.to_vec(),
            window_key(&into).to_vec(),
            value,
        )?;
        Ok(())
    }

    fn purge(&mut self, key: &[u8], window: &Window) -> Result<(), WindowError> {
        self.function
            .keyed_state()
            .map_remove(WINDOWS_STATE, key, &window_key(window))?;
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
