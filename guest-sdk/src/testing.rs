//! Run an operator natively under `cargo test`: the same runtime glue as in a component, with an
//! in-memory host standing in for weir (state, emitted records, log lines).
//!
//! ```
//! # use weir_guest_sdk::prelude::*;
//! # use weir_guest_sdk::testing::Harness;
//! # struct Count { counts: ValueState<u64> }
//! # impl Operator for Count {
//! #     fn open(_: &mut Context, _: Config) -> Result<Self, Error> {
//! #         Ok(Count { counts: ValueState::new("count") })
//! #     }
//! #     fn process(&mut self, ctx: &mut Context, r: Record<'_>) -> Result<(), Error> {
//! #         let n = self.counts.get(r.key)?.unwrap_or(0) + 1;
//! #         self.counts.set(r.key, &n)?;
//! #         ctx.emit(r.key, format!("{} {n}", r.key_str()?));
//! #         Ok(())
//! #     }
//! # }
//! let mut h = Harness::<Count>::open("{}")?;
//! h.process(&[Record::new("a", "a"), Record::new("a", "a")])?;
//! assert_eq!(h.output_values(), ["a 1", "a 2"]);
//! assert_eq!(h.value::<u64>("count", "a"), Some(2));
//! # Ok::<(), Error>(())
//! ```
//!
//! An operator instance lives in a thread-local slot, as in a component, so a thread runs one
//! harness at a time (each `#[test]` has its own thread).

use crate::backend::{self, Backend};
use crate::log::Level;
use crate::{Error, Operator, Poll, Record, Source, StateError, TimeDomain, runtime};
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::rc::Rc;

/// A record the operator emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    /// `None` for the main output, else the side output's name.
    pub output: Option<String>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub timestamp: Option<i64>,
}

impl Emitted {
    /// The value as text (lossy).
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// A state slot: state name and key.
type Slot = (String, Vec<u8>);

#[derive(Default)]
struct MemoryHost {
    values: BTreeMap<Slot, Vec<u8>>,
    maps: BTreeMap<Slot, BTreeMap<Vec<u8>, Vec<u8>>>,
    emitted: Vec<Emitted>,
    logs: Vec<(Level, String)>,
    attempt: u32,
    /// The watermark the operator sees (`None`: before any, `i64::MIN`).
    watermark: Option<i64>,
    /// The wall clock the operator sees, ms.
    clock: i64,
    /// Timers registered and not yet fired: (domain, time, key), in firing order.
    timers: BTreeSet<(u8, i64, Vec<u8>)>,
}

fn domain_byte(d: TimeDomain) -> u8 {
    match d {
        TimeDomain::Event => 0,
        TimeDomain::Processing => 1,
    }
}

struct Shared(Rc<RefCell<MemoryHost>>);

fn slot(name: &str, key: &[u8]) -> Slot {
    (name.to_string(), key.to_vec())
}

impl Backend for Shared {
    fn emit(&mut self, output: Option<&str>, batch: &[u8]) {
        let mut host = self.0.borrow_mut();
        for r in weir_batch::iter(batch) {
            let r = r.expect("the SDK writes well-formed batches");
            host.emitted.push(Emitted {
                output: output.map(str::to_string),
                key: r.key.to_vec(),
                value: r.value.to_vec(),
                timestamp: r.timestamp,
            });
        }
    }
    fn value_get(&mut self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.borrow().values.get(&slot(name, key)).cloned())
    }
    fn value_set(&mut self, name: &str, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.0
            .borrow_mut()
            .values
            .insert(slot(name, key), value.to_vec());
        Ok(())
    }
    fn value_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateError> {
        self.0.borrow_mut().values.remove(&slot(name, key));
        Ok(())
    }
    fn value_get_many(&mut self, name: &str, keys: &[u8]) -> Result<Vec<u8>, StateError> {
        let mut out = Vec::new();
        for key in weir_batch::lengths::iter(keys) {
            let key = key
                .expect("the SDK writes well-formed keys")
                .expect("keys are present");
            let value = self.0.borrow().values.get(&slot(name, key)).cloned();
            weir_batch::lengths::push(&mut out, value.as_deref());
        }
        Ok(out)
    }
    fn value_set_many(&mut self, name: &str, entries: &[u8]) -> Result<(), StateError> {
        let mut items = weir_batch::lengths::iter(entries)
            .map(|i| i.expect("the SDK writes well-formed entries"));
        while let (Some(Some(key)), Some(value)) = (items.next(), items.next()) {
            match value {
                Some(v) => self.value_set(name, key, v)?,
                None => self.value_clear(name, key)?,
            }
        }
        Ok(())
    }
    fn map_get(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .0
            .borrow()
            .maps
            .get(&slot(name, key))
            .and_then(|m| m.get(map_key))
            .cloned())
    }
    fn map_put(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        self.0
            .borrow_mut()
            .maps
            .entry(slot(name, key))
            .or_default()
            .insert(map_key.to_vec(), value.to_vec());
        Ok(())
    }
    fn map_remove(&mut self, name: &str, key: &[u8], map_key: &[u8]) -> Result<(), StateError> {
        if let Some(m) = self.0.borrow_mut().maps.get_mut(&slot(name, key)) {
            m.remove(map_key);
        }
        Ok(())
    }
    fn map_entries(
        &mut self,
        name: &str,
        key: &[u8],
    ) -> Result<crate::backend::EntryList, StateError> {
        let host = self.0.borrow();
        let entries = host.maps.get(&slot(name, key));
        Ok(entries
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }
    fn map_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateError> {
        self.0.borrow_mut().maps.remove(&slot(name, key));
        Ok(())
    }
    fn log(&mut self, level: Level, message: &str) {
        self.0.borrow_mut().logs.push((level, message.to_string()));
    }
    fn attempt(&mut self) -> u32 {
        self.0.borrow().attempt
    }
    fn watermark(&mut self) -> i64 {
        self.0.borrow().watermark.unwrap_or(i64::MIN)
    }
    fn processing_time(&mut self) -> i64 {
        self.0.borrow().clock
    }
    fn timer(
        &mut self,
        domain: TimeDomain,
        key: &[u8],
        time: i64,
        register: bool,
    ) -> Result<(), StateError> {
        let timer = (domain_byte(domain), time, key.to_vec());
        let timers = &mut self.0.borrow_mut().timers;
        if register {
            timers.insert(timer);
        } else {
            timers.remove(&timer);
        }
        Ok(())
    }
}

/// The in-memory host one harness installs around each call into the guest code.
#[derive(Default)]
struct Sandbox {
    host: Rc<RefCell<MemoryHost>>,
}

impl Sandbox {
    fn call<R>(&self, f: impl FnOnce() -> Result<R, String>) -> Result<R, Error> {
        let previous = backend::install(Some(Box::new(Shared(self.host.clone()))));
        let r = f();
        backend::install(previous);
        r.map_err(Error::msg)
    }

    fn take_output(&self) -> Vec<Emitted> {
        std::mem::take(&mut self.host.borrow_mut().emitted)
    }
}

/// Drives one operator instance natively, as weir would inside a component.
pub struct Harness<T: Operator> {
    sandbox: Sandbox,
    _operator: PhantomData<T>,
}

impl<T: Operator> Harness<T> {
    /// Opens the operator with `config` (JSON text, as the host passes the manifest's table).
    pub fn open(config: &str) -> Result<Self, Error> {
        let h = Harness {
            sandbox: Sandbox::default(),
            _operator: PhantomData,
        };
        h.sandbox.call(|| runtime::open::<T>(config.to_string()))?;
        Ok(h)
    }

    /// Passes `records` to the operator as one batch.
    pub fn process(&mut self, records: &[Record<'_>]) -> Result<(), Error> {
        let mut batch = Vec::new();
        for r in records {
            weir_batch::push(
                &mut batch,
                &weir_batch::Record {
                    key: r.key,
                    value: r.value,
                    timestamp: r.timestamp,
                },
            );
        }
        self.sandbox.call(|| runtime::process::<T>(&batch))
    }

    /// Opens the operator as in restart `attempt` of its job (see [`Context::attempt`]).
    ///
    /// [`Context::attempt`]: crate::Context::attempt
    pub fn open_attempt(config: &str, attempt: u32) -> Result<Self, Error> {
        let h = Harness {
            sandbox: Sandbox::default(),
            _operator: PhantomData,
        };
        h.sandbox.host.borrow_mut().attempt = attempt;
        h.sandbox.call(|| runtime::open::<T>(config.to_string()))?;
        Ok(h)
    }

    /// The operator's private state, as a checkpoint takes it ([`Operator::snapshot`]).
    pub fn snapshot(&mut self) -> Result<Vec<u8>, Error> {
        self.sandbox.call(runtime::snapshot::<T>)
    }

    /// Hands the operator a private state, as a restore does ([`Operator::restore`]).
    pub fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        self.sandbox.call(|| runtime::restore::<T>(state))
    }

    /// Ends the input: the operator's `close`.
    pub fn close(&mut self) -> Result<(), Error> {
        self.sandbox.call(runtime::close::<T>)
    }

    /// Takes every record emitted so far.
    pub fn take_output(&mut self) -> Vec<Emitted> {
        self.sandbox.take_output()
    }

    /// Takes the values (as text) of the records emitted so far to the main output.
    pub fn output_values(&mut self) -> Vec<String> {
        self.take_output()
            .into_iter()
            .filter(|e| e.output.is_none())
            .map(|e| e.value_str())
            .collect()
    }

    /// Advances the watermark to `wm`: the event-time timers up to it fire, in time order,
    /// as the host fires them.
    pub fn advance_watermark(&mut self, wm: i64) -> Result<(), Error> {
        self.sandbox.host.borrow_mut().watermark = Some(wm);
        self.fire(TimeDomain::Event, wm)
    }

    /// Sets the wall clock to `now` (ms): the processing-time timers up to it fire.
    pub fn advance_processing_time(&mut self, now: i64) -> Result<(), Error> {
        self.sandbox.host.borrow_mut().clock = now;
        self.fire(TimeDomain::Processing, now)
    }

    /// The timers registered and not fired yet: (domain, time, key), in firing order.
    pub fn timers(&self) -> Vec<(TimeDomain, i64, Vec<u8>)> {
        (self.sandbox.host.borrow().timers.iter())
            .map(|(d, t, k)| {
                let d = if *d == 0 {
                    TimeDomain::Event
                } else {
                    TimeDomain::Processing
                };
                (d, *t, k.clone())
            })
            .collect()
    }

    fn fire(&mut self, domain: TimeDomain, now: i64) -> Result<(), Error> {
        // Rounds, as the host: timers registered while firing, already due, fire next.
        for _ in 0..100 {
            let mut batch = Vec::new();
            {
                let mut host = self.sandbox.host.borrow_mut();
                let d = domain_byte(domain);
                let due: Vec<_> = (host.timers.iter())
                    .filter(|(td, t, _)| *td == d && *t <= now)
                    .cloned()
                    .collect();
                for timer in due {
                    host.timers.remove(&timer);
                    batch.push(timer.0);
                    batch.extend_from_slice(&timer.1.to_le_bytes());
                    weir_batch::lengths::push(&mut batch, Some(&timer.2));
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
            self.sandbox.call(|| runtime::on_timer::<T>(&batch))?;
        }
        Ok(())
    }

    /// The value state `name` holds for `key`.
    pub fn value<V: DeserializeOwned>(&self, name: &str, key: impl AsRef<[u8]>) -> Option<V> {
        let host = self.sandbox.host.borrow();
        let bytes = host.values.get(&slot(name, key.as_ref()))?;
        Some(postcard::from_bytes(bytes).expect("state written by ValueState decodes"))
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.sandbox.host.borrow().logs.clone()
    }
}

/// Drives one source subtask natively, as weir would inside a component.
pub struct SourceHarness<T: Source> {
    sandbox: Sandbox,
    _source: PhantomData<T>,
}

impl<T: Source> SourceHarness<T> {
    /// Opens subtask `subtask` of `parallelism` with `config` (JSON text).
    pub fn open(config: &str, subtask: u32, parallelism: u32) -> Result<Self, Error> {
        let h = SourceHarness {
            sandbox: Sandbox::default(),
            _source: PhantomData,
        };
        h.sandbox
            .call(|| runtime::source_open::<T>(config.to_string(), subtask, parallelism))?;
        Ok(h)
    }

    /// Polls for up to `max_records` records; they are in [`take_output`](Self::take_output).
    pub fn poll(&mut self, max_records: u32) -> Result<Poll, Error> {
        self.sandbox.call(|| runtime::source_poll::<T>(max_records))
    }

    /// The source's position now.
    pub fn position(&self) -> Vec<u8> {
        self.sandbox
            .call(|| Ok(runtime::source_position::<T>()))
            .unwrap_or_default()
    }

    /// Restores a position.
    pub fn restore(&mut self, position: &[u8]) -> Result<(), Error> {
        self.sandbox
            .call(|| runtime::source_restore::<T>(position.to_vec()))
    }

    /// Takes every record emitted so far.
    pub fn take_output(&mut self) -> Vec<Emitted> {
        self.sandbox.take_output()
    }
}
