//! Source components (the `weir:operator/source` world): polled by the host, with positions that
//! are monotonic and resume exactly, run by `weir run`, refused when of the wrong world.

mod common;

use common::*;
use std::sync::Arc;
use weir::plan::GuestLimits;
use weir::wasm::{InstanceSpec, Runtime, SourceInstance, World};

fn gen_instance(runtime: &Runtime, n: u64, subtask: u32, parallelism: u32) -> SourceInstance {
    let loaded = runtime
        .load(
            std::path::Path::new(&component("bench_gen")),
            World::Source,
            GuestLimits::default().component_bytes,
        )
        .unwrap();
    let spec = InstanceSpec {
        operator: Arc::from("gen"),
        subtask,
        parallelism,
        max_parallelism: 128,
        limits: GuestLimits::default(),
        config_json: format!(r#"{{"workload": "stateless", "n": {n}}}"#),
        side_outputs: Arc::from([]),
        cancel: Default::default(),
        attempt: 0,
        state_dir: None,
        incremental: false,
        logs: None,
    };
    loaded.instantiate_source(&spec).unwrap()
}

/// Polls until the end, returning every record value and the position after each poll.
fn drain(source: &mut SourceInstance, max: u32) -> (Vec<String>, Vec<u64>) {
    let (mut values, mut positions) = (Vec::new(), Vec::new());
    loop {
        let (more, outputs) = source.poll(max).unwrap();
        for (_, batch) in outputs {
            values.extend(
                weir_batch::iter(&batch)
                    .map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap()),
            );
        }
        positions.push(u64::from_le_bytes(
            source.position().unwrap().try_into().unwrap(),
        ));
        if !more {
            return (values, positions);
        }
    }
}

#[test]
fn positions_are_monotonic_and_a_restored_position_resumes_exactly() {
    let runtime = Runtime::new().unwrap();
    let mut whole = gen_instance(&runtime, 5000, 1, 2);
    let (all, positions) = drain(&mut whole, 100);
    assert_eq!(all.len(), 2500);
    assert_eq!(
        all[0], "1,user545,2807",
        "index 1 of the stateless workload (computed independently)"
    );
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    for cut in [1, 7, 100, 333] {
        let mut first = gen_instance(&runtime, 5000, 1, 2);
        let mut seen = Vec::new();
        let (_, outputs) = first.poll(cut).unwrap();
        for (_, batch) in outputs {
            seen.extend(
                weir_batch::iter(&batch)
                    .map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap()),
            );
        }
        let position = first.position().unwrap();
        let mut resumed = gen_instance(&runtime, 5000, 1, 2);
        resumed.restore(&position).unwrap();
        let (rest, _) = drain(&mut resumed, 64);
        seen.extend(rest);
        assert_eq!(seen, all, "resuming after {cut} records");
    }
    let mut bad = gen_instance(&runtime, 5000, 1, 2);
    let err = bad.restore(&[0, 0]).unwrap_err().to_string();
    assert!(
        err.contains("the operator returned an error from restore: a gen position is 8 bytes"),
        "{err}"
    );
}

fn gen_job(dir: &std::path::Path, source_component: &str) -> std::path::PathBuf {
    write_manifest(
        dir,
        &format!(
            r#"edges = ["gen -> out"]
[job]
parallelism = 2
[sources.gen]
kind = "wasm"
component = "{source_component}"
config = {{ workload = "stateless", n = 10000 }}
[sinks.out]
kind = "file"
path = "{out}"
"#,
            out = dir.join("out").display()
        ),
    )
}

#[test]
fn weir_runs_a_source_component() {
    let dir = scratch();
    let manifest = gen_job(dir.path(), &component("bench_gen"));
    run_ok(&["run", manifest.to_str().unwrap()]);
    let mut lines = sink_lines(&dir.path().join("out"));
    assert_eq!(lines.len(), 10_000);
    lines.sort_by_key(|l| l.split(',').next().unwrap().parse::<u64>().unwrap());
    assert_eq!(lines[0], "0,user813,323");
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| l.starts_with(&format!("{i},")))
    );
}

#[test]
fn components_of_the_wrong_world_are_refused_in_either_place() {
    let dir = scratch();
    let manifest = gen_job(dir.path(), &component("wordcount_split"));
    let e = run_err(&["validate", manifest.to_str().unwrap()]);
    assert!(
        e.contains("source `gen`")
            && e.contains("does not implement the weir:operator/source@0.1.0 world"),
        "{e}"
    );
    let e = run_err(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "sources.gen.count=5",
    ]);
    assert!(
        e.contains("sources.gen.count: does not apply to a `wasm` connector"),
        "{e}"
    );

    let out = run_ok(&["inspect", &component("bench_gen")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("weir worlds: weir:operator/source@0.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("poll: func(max-records: u32) -> result<enum, string>"),
        "{stdout}"
    );
}
