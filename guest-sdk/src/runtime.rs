//! The glue between the component's exports and an [`Operator`]: one instance per subtask,
//! batches unpacked into records, emitted records packed back and flushed once per batch.

use crate::{Config, Context, Operator, Record, log};
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

/// The `open` export.
pub fn open<T: Operator>(config: String) -> Result<(), String> {
    if cfg!(target_family = "wasm") {
        install_panic_hook();
    }
    let mut ctx = Context::default();
    let operator = T::open(&mut ctx, Config::from_json(config)).map_err(|e| e.to_string())?;
    ctx.flush();
    INSTANCE.with(|i| {
        *i.borrow_mut() = Some(Instance {
            operator: Box::new(operator),
            ctx,
        })
    });
    Ok(())
}

fn with_instance<T: Operator, R>(
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

/// The `process` export: every record of the batch, in order.
pub fn process<T: Operator>(batch: &[u8]) -> Result<(), String> {
    with_instance::<T, _>(|op, ctx| {
        for record in weir_batch::iter(batch) {
            let record = record.map_err(|e| e.to_string())?;
            op.process(ctx, Record::from(record))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// The `close` export.
pub fn close<T: Operator>() -> Result<(), String> {
    let r = with_instance::<T, _>(|op, ctx| op.close(ctx).map_err(|e| e.to_string()));
    INSTANCE.with(|i| i.borrow_mut().take());
    r
}
