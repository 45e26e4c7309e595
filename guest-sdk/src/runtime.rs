//! The glue between the component's exports and an [`Operator`] or a [`Source`]: one instance
//! per subtask, batches unpacked into records, emitted records packed back and flushed once per
//! call.

use crate::{Config, Context, Operator, Poll, Record, Source, Split, TimeDomain, Timer, log};
use std::any::Any;
use std::cell::RefCell;

struct Instance {
    operator: Box<dyn Any>,
    ctx: Context,
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

/// Reports a panic's message to the host log before the guest traps, so that the job's failure
/// says why the operator panicked and not only that it trapped.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log::log(log::Level::Error, &format!("operator panicked: {info}"));
    }));
}

/// Opens the instance of this subtask with `open`.
fn install<T: 'static>(
    open: impl FnOnce(&mut Context) -> Result<T, crate::Error>,
) -> Result<(), String> {
    if cfg!(target_family = "wasm") {
        install_panic_hook();
    }
    let mut ctx = Context::default();
    let operator = open(&mut ctx).map_err(|e| e.to_string())?;
    ctx.flush();
    INSTANCE.with(|i| {
        *i.borrow_mut() = Some(Instance {
            operator: Box::new(operator),
            ctx,
        })
    });
    Ok(())
}

/// The operator's `open` export.
pub fn open<T: Operator>(config: String) -> Result<(), String> {
    install(|ctx| T::open(ctx, Config::from_json(config)))
}

fn with_instance<T: 'static, R>(
    f: impl FnOnce(&mut T, &mut Context) -> Result<R, String>,
) -> Result<R, String> {
    INSTANCE.with(|i| {
        let mut slot = i.borrow_mut();
        let inst = slot
            .as_mut()
            .ok_or_else(|| "operator called before open".to_string())?;
        let op = inst
            .operator
            .downcast_mut::<T>()
            .ok_or_else(|| "operator instance has another type".to_string())?;
        let r = f(op, &mut inst.ctx);
        inst.ctx.flush();
        r
    })
}

/// The `process` export: the records of the batch, in order.
pub fn process<T: Operator>(batch: &[u8]) -> Result<(), String> {
    // Sized for the most records the batch can hold (a record takes at least its 9-byte
    // header), up to 16 Ki records, so that it rarely grows: growing copies it, a `memory.copy`
    // call each time.
    let mut records = Vec::with_capacity((batch.len() / 9 + 1).min(16 << 10));
    for r in weir_batch::iter(batch) {
        records.push(Record::from(r.map_err(|e| e.to_string())?));
    }
    with_instance::<T, _>(|op, ctx| op.process_batch(ctx, &records).map_err(|e| e.to_string()))
}

/// The `on-timer` export: each timer of the batch (domain byte, time i64 LE, length-prefixed
/// key), in order.
pub fn on_timer<T: Operator>(timers: &[u8]) -> Result<(), String> {
    with_instance::<T, _>(|op, ctx| {
        let bad = |why: &str| format!("the host passed malformed timers: {why}");
        let mut pos = 0;
        while pos < timers.len() {
            let head = timers.get(pos..pos + 9).ok_or_else(|| bad("cut off"))?;
            let domain = match head[0] {
                0 => TimeDomain::Event,
                1 => TimeDomain::Processing,
                _ => return Err(bad("an unknown time domain")),
            };
            let time = i64::from_le_bytes(head[1..9].try_into().expect("8 bytes"));
            pos += 9;
            let key = weir_batch::lengths::iter(&timers[pos..])
                .next()
                .ok_or_else(|| bad("a key is missing"))?
                .map_err(|e| bad(&e.to_string()))?
                .ok_or_else(|| bad("an absent key"))?;
            pos += 4 + key.len();
            op.on_timer(ctx, Timer { key, time, domain })
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// The `migrate` export of `migration`: runs in an instance never opened, so it installs the
/// panic hook itself.
pub fn migrate<T: Operator>(state: &str, from: u32, value: &[u8]) -> Result<Vec<u8>, String> {
    if cfg!(target_family = "wasm") {
        install_panic_hook();
    }
    T::migrate(state, from, value).map_err(|e| e.to_string())
}

/// The `snapshot` export of `checkpoint-hooks`.
pub fn snapshot<T: Operator>() -> Result<Vec<u8>, String> {
    with_instance::<T, _>(|op, _| op.snapshot().map_err(|e| e.to_string()))
}

/// The `restore` export of `checkpoint-hooks`.
pub fn restore<T: Operator>(state: &[u8]) -> Result<(), String> {
    with_instance::<T, _>(|op, _| op.restore(state).map_err(|e| e.to_string()))
}

/// The `close` export.
pub fn close<T: Operator>() -> Result<(), String> {
    let r = with_instance::<T, _>(|op, ctx| op.close(ctx).map_err(|e| e.to_string()));
    INSTANCE.with(|i| i.borrow_mut().take());
    r
}

/// The source's `open` export.
pub fn source_open<T: Source>(
    config: String,
    subtask: u32,
    parallelism: u32,
) -> Result<(), String> {
    install(|ctx| {
        T::open(
            ctx,
            Config::from_json(config),
            Split {
                subtask,
                parallelism,
            },
        )
    })
}

/// The source's `poll` export.
pub fn source_poll<T: Source>(max_records: u32) -> Result<Poll, String> {
    with_instance::<T, _>(|source, ctx| source.poll(ctx, max_records).map_err(|e| e.to_string()))
}

/// The source's `position` export.
pub fn source_position<T: Source>() -> Vec<u8> {
    with_instance::<T, _>(|source, _| Ok(source.position())).unwrap_or_default()
}

/// The source's `restore` export.
pub fn source_restore<T: Source>(position: Vec<u8>) -> Result<(), String> {
    with_instance::<T, _>(|source, _| source.restore(&position).map_err(|e| e.to_string()))
}
