//! An operator that attacks the host rather than its own sandbox, one way per `mode` in its
//! config: each mode tries to make the host grow without bound, hang, ignore cancellation or
//! blame the wrong cause. The host must stop every one of them with a clear error, and the end-
//! to-end tests (`tests/hostile.rs`) check that it does.
//!
//! | mode | what it does |
//! |---|---|
//! | `emit-empty` | calls `emit` with an empty batch, forever, in one call |
//! | `side-name` | emits a record to a side output named by `n` bytes (default 1 MiB), forever |
//! | `sleep` | sleeps `n` seconds (default 60) in `process`, a blocking WASI call |
//! | `stdin` | reads its standard input to the end, a blocking WASI read, and emits its length |
//! | `state-flood` | sets value state for `n` new keys (default 1 M) of 10 KB each |
//! | `log-flood` | logs `n` lines (default 1 M) at info level, then carries on |
//! | `log-huge` | logs one 10 MB line, then one carrying terminal escape codes |
//! | `print` | prints `n` lines (default 1 M) to stdout and as many to stderr, then carries on |
//! | `stale-panic` | logs a panic message in `open`, then overflows its stack in `process` |

use serde::Deserialize;
use weir_guest_sdk::bindings::weir::operator::{emit, state};
use weir_guest_sdk::log;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize)]
struct Settings {
    mode: String,
    n: Option<u64>,
}

pub struct Hostile {
    mode: String,
    n: Option<u64>,
}

/// One record in the flat batch format (no timestamp, key "k", value "v").
fn one_record() -> Vec<u8> {
    let mut batch = vec![0u8];
    batch.extend_from_slice(&1u32.to_le_bytes());
    batch.extend_from_slice(&1u32.to_le_bytes());
    batch.extend_from_slice(b"kv");
    batch
}

/// Recurses until the stack runs out (the frame is kept alive by the work after the call).
#[inline(never)]
#[allow(unconditional_recursion)]
fn deep(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    deep(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}

impl Operator for Hostile {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        if s.mode == "stale-panic" {
            // What the SDK's panic hook logs, but no panic follows in this call.
            log::error("operator panicked: a stale message logged in open");
        }
        Ok(Hostile {
            mode: s.mode,
            n: s.n,
        })
    }

    fn process(&mut self, ctx: &mut Context, _record: Record<'_>) -> Result<(), Error> {
        match self.mode.as_str() {
            "emit-empty" => loop {
                emit::emit(None, &[]);
            },
            "side-name" => {
                let name = "x".repeat(self.n.unwrap_or(1 << 20) as usize);
                let batch = one_record();
                loop {
                    emit::emit(Some(&name), &batch);
                }
            }
            "stdin" => {
                let mut input = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut input)
                    .map_err(|e| Error::msg(format!("stdin: {e}")))?;
                ctx.emit("stdin", format!("stdin: {} bytes", input.len()));
                Ok(())
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(self.n.unwrap_or(60)));
                Ok(())
            }
            "state-flood" => {
                let value = vec![7u8; 10_000];
                for i in 0..self.n.unwrap_or(1_000_000) {
                    state::value_set("flood", format!("key-{i}").as_bytes(), &value)
                        .map_err(|e| Error::msg(format!("{e:?}")))?;
                }
                Ok(())
            }
            "log-flood" => {
                for i in 0..self.n.unwrap_or(1_000_000) {
                    log::info(&format!("flood line {i}"));
                }
                Ok(())
            }
            "print" => {
                for i in 0..self.n.unwrap_or(1_000_000) {
                    println!("out line {i}");
                    eprintln!("err line {i}");
                }
                Ok(())
            }
            "log-huge" => {
                log::info(&"y".repeat(10 << 20));
                log::warn("colour \x1b[31mred\x1b[0m and a bell \x07");
                Ok(())
            }
            "stale-panic" => {
                std::hint::black_box(deep(0));
                Ok(())
            }
            other => Err(Error::msg(format!("unknown mode `{other}`"))),
        }
    }
}

export_operator!(Hostile);
