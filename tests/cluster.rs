//! The cluster's processes, for real: a coordinator and workers on 127.0.0.1 over QUIC with
//! mutual TLS. Workers join with the token, register their slots and send heartbeats; a wrong
//! token, a duplicate worker and a worker of another cluster are refused and the refusals
//! logged; a killed worker is declared lost by heartbeat timeout; a restarted coordinator keeps
//! its CA and token, and a worker that joined before registers again without the token.

mod common;

use common::procs::*;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn workers_join_register_and_are_lost_by_heartbeat_timeout() {
    let dir = scratch();
    let (coord, addr) = coordinator(dir.path(), "coord");
    let token = std::fs::read_to_string(dir.path().join("coord/join-token")).unwrap();
    let token = token.trim();
    assert!(
        coord.stdout().contains(token),
        "the join command names the token"
    );
    let w1 = worker(dir.path(), "w1", &addr, Some(token), 4);
    let mut w2 = worker(dir.path(), "w2", &addr, Some(token), 2);
    w1.wait_for("registered", LIMIT);
    w2.wait_for("registered", LIMIT);
    let log = coord.wait_for("slots=2", LIMIT);
    assert!(log.contains("slots=4"), "{log}");
    // Keys and tokens are readable by their owner only.
    use std::os::unix::fs::PermissionsExt as _;
    for f in ["coord/ca.key", "coord/join-token", "w1/key.pem"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is private");
    }

    // A wrong token: refused, on both sides.
    let wrong = format!(
        "{}{}",
        &token[..token.len() - 2],
        if token.ends_with("00") { "11" } else { "00" }
    );
    let mut bad = worker(dir.path(), "bad", &addr, Some(&wrong), 1);
    assert!(!bad.wait_exit(LIMIT).success());
    assert!(
        bad.stderr().contains("wrong join token"),
        "{}",
        bad.stderr()
    );
    coord.wait_for("refused: wrong join token", LIMIT);

    // A token of another cluster: the worker does not trust this coordinator.
    let other = format!("weir1-{}-{}", "a".repeat(64), "b".repeat(64));
    let mut stranger = worker(dir.path(), "stranger", &addr, Some(&other), 1);
    assert!(!stranger.wait_exit(LIMIT).success());
    assert!(
        stranger
            .stderr()
            .contains("not the one the join token names"),
        "{}",
        stranger.stderr()
    );

    // A second process with w2's data directory (its id and certificate): refused while w2
    // lives.
    let mut twin = worker(dir.path(), "w2", &addr, None, 1);
    assert!(!twin.wait_exit(LIMIT).success());
    assert!(
        twin.stderr().contains("already registered"),
        "{}",
        twin.stderr()
    );

    // w2 killed: lost within the heartbeat timeout (1 s), and w1 stays.
    w2.kill();
    let id2 = std::fs::read_to_string(dir.path().join("w2/worker-id")).unwrap();
    let killed = Instant::now();
    let log = coord.wait_for(
        &format!(
            "worker lost: no heartbeat for 1000 ms worker=\"{}\"",
            id2.trim()
        ),
        LIMIT,
    );
    assert!(killed.elapsed() < Duration::from_secs(5));
    let id1 = std::fs::read_to_string(dir.path().join("w1/worker-id")).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.contains("worker lost") && l.contains(id1.trim())),
        "{log}"
    );
    // w2 restarted: it has its certificate, so no token is needed, and it registers again.
    let w2 = worker(dir.path(), "w2", &addr, None, 2);
    w2.wait_for("registered", LIMIT);
    drop(w1);
}

#[test]
fn a_restarted_coordinator_keeps_its_ca_and_token_and_its_workers_come_back() {
    let dir = scratch();
    // A port to restart on.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (mut coord, addr) = coordinator_at(dir.path(), "coord", &listen);
    let token = std::fs::read_to_string(dir.path().join("coord/join-token")).unwrap();
    let w = worker(dir.path(), "w", &addr, Some(token.trim()), 1);
    let mut quick = worker_with(
        dir.path(),
        "quick",
        &addr,
        Some(token.trim()),
        1,
        &["--reconnect-timeout", "2s"],
    );
    w.wait_for("registered", LIMIT);
    quick.wait_for("registered", LIMIT);
    coord.kill();
    // A worker that may wait 2 s for the coordinator gives up and says why.
    assert!(!quick.wait_exit(Duration::from_secs(30)).success());
    assert!(
        quick.stderr().contains("lost the coordinator")
            && quick.stderr().contains("--reconnect-timeout"),
        "{}",
        quick.stderr()
    );
    w.wait_for("reconnecting", Duration::from_secs(30));
    // The coordinator comes back on the same address with the same CA and token; the other
    // worker registers again by itself, with the certificate it has.
    let (coord, _) = coordinator_at(dir.path(), "coord2", &listen);
    let again = std::fs::read_to_string(dir.path().join("coord/join-token")).unwrap();
    assert_eq!(again, token, "the same token");
    coord.wait_for("worker registered", LIMIT);
    let start = Instant::now();
    while w.stderr().matches(" registered ").count() < 2 {
        assert!(start.elapsed() < LIMIT, "{}", w.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The word count on a coordinator and three workers at parallelism 4 writes exactly what local
/// mode writes, subtask by subtask; its subtasks are spread 2 + 1 + 1 over three 2-slot
/// workers, and its channels between workers cross the network.
#[test]
fn the_word_count_on_three_workers_writes_what_local_mode_writes() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[2, 2, 2]);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, text(400_000, 7)).unwrap();
    let manifest = wordcount_manifest(dir.path(), &input, "");
    let local_out = dir.path().join("local");
    let local = run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=4",
        "--set",
        &format!("sinks.out.path={}", local_out.display()),
    ]);
    assert!(local.status.success());
    let out = cluster.run(&manifest, &["--set", "job.parallelism=4"]);
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("job `wordcount-test` finished"), "{err}");
    let expected = parts_sorted(&local_out);
    assert_eq!(expected.len(), 4);
    assert_eq!(parts_sorted(&dir.path().join("out")), expected);
    assert_running_counts(
        &sink_lines(&dir.path().join("out")),
        &count_words(&std::fs::read_to_string(&input).unwrap()),
        1,
    );
    // Spread: two slots on one worker, one on each of the others.
    let log = cluster.coord.wait_for("job finished", LIMIT);
    let line = log
        .lines()
        .find(|l| l.contains("job submitted"))
        .expect("the placement is logged");
    let mut spread: Vec<&str> = ["2 slots on", "1 slots on"]
        .into_iter()
        .flat_map(|s| std::iter::repeat_n(s, line.matches(s).count()))
        .collect();
    spread.sort();
    assert_eq!(spread, ["1 slots on", "1 slots on", "2 slots on"], "{line}");
    // Every worker fetched the two components once and keeps them.
    for i in 0..3 {
        let cached = std::fs::read_dir(dir.path().join(format!("w{i}/components")))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(cached, 2, "worker w{i}'s component cache");
    }
}

/// Every partitioning across workers (forward, rebalance, broadcast, hash, each edge its own
/// channels with chaining off) gives what local mode gives.
#[test]
fn every_partitioning_across_workers_gives_the_local_output() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[2, 2]);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, text(100_000, 3)).unwrap();
    let split = component("wordcount_split");
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["lines -> a", "a -> b", "b -> c", "c -> count", "count -> out"]
[job]
name = "partitions"
chaining = false
[sources.lines]
kind = "file"
path = "{input}"
parallelism = 2
[operators.a]
component = "{split}"
parallelism = 2
partition = "forward"
[operators.b]
component = "{split}"
parallelism = 3
partition = "rebalance"
[operators.c]
component = "{split}"
parallelism = 2
partition = "broadcast"
[operators.count]
component = "{count}"
parallelism = 3
partition = "hash"
[sinks.out]
kind = "file"
path = "{out}"
parallelism = 3
"#,
            input = input.display(),
            count = component("wordcount_count"),
            out = dir.path().join("out").display(),
        ),
    );
    let local_out = dir.path().join("local");
    run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        &format!("sinks.out.path={}", local_out.display()),
    ]);
    let out = cluster.run(&manifest, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let expected = parts_sorted(&local_out);
    assert_eq!(expected.len(), 3);
    assert_eq!(parts_sorted(&dir.path().join("out")), expected);
    // The broadcast doubled every word: each one's running count ends even.
    let counts = emitted_counts(&sink_lines(&dir.path().join("out")));
    assert!(counts.len() > 1000);
    assert!(
        counts
            .values()
            .all(|c| c.last().is_some_and(|n| n % 2 == 0))
    );
}

/// A job that cannot fit is refused at once, saying how many slots it needs and how many are
/// free; a submission with a wrong token is refused; the cluster takes the next job.
#[test]
fn a_job_that_does_not_fit_or_has_a_wrong_token_is_refused() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[2, 1]);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, text(1_000, 1)).unwrap();
    let manifest = wordcount_manifest(dir.path(), &input, "");
    let started = Instant::now();
    let out = cluster.run(&manifest, &["--set", "job.parallelism=4"]);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("the job needs 4 slots") && err.contains("but 3 are free on 2 workers"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let mut bad = cluster.token.clone();
    bad.replace_range(
        bad.len() - 2..,
        if bad.ends_with("00") { "11" } else { "00" },
    );
    let mut wrong = weir();
    wrong.args(["run", manifest.to_str().unwrap()]).args([
        "--coordinator",
        &cluster.addr,
        "--token",
        &bad,
    ]);
    let out = run_bounded(wrong, LIMIT);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("wrong token"), "{err}");
    cluster.coord.wait_for("refused a job: wrong token", LIMIT);

    let out = cluster.run(&manifest, &["--set", "job.parallelism=3"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// Ctrl-C cancels a job running on the cluster: the command says so and fails, the workers
/// stop its tasks, and their slots are free for the next job.
#[test]
fn ctrl_c_cancels_a_cluster_job_and_frees_its_slots() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[1, 1]);
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["src -> out"]
[job]
name = "endless"
parallelism = 2
[sources.src]
kind = "datagen"
rate = 1000
shape = "sequence"
[sinks.out]
kind = "file"
path = "{}"
partition = "hash"
"#,
            dir.path().join("out").display()
        ),
    );
    let child = spawn(cluster.submit(&manifest, &[]));
    cluster.coord.wait_for("job submitted", LIMIT);
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let out = wait_bounded(child, LIMIT);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("the job was cancelled: cancelled by the user (Ctrl-C)"),
        "{err}"
    );
    cluster.coord.wait_for("job cancelled", LIMIT);
    // The slots are free again: a bounded job of the same size runs.
    let out = cluster.run(&manifest, &["--set", "sources.src.count=100"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mut got: Vec<u64> = sink_lines(&dir.path().join("out"))
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

/// A worker killed while it runs part of a job is declared lost; the job restarts (from the
/// start: it takes no checkpoints) on the remaining slots under its restart strategy and
/// finishes with every record written once.
#[test]
fn a_job_restarts_on_the_remaining_workers_when_one_is_killed() {
    let dir = scratch();
    let mut cluster = Cluster::start(dir.path(), &[1, 1, 1]);
    let n = 30_000u64;
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["src -> out"]
[job]
name = "failover"
parallelism = 2
[sources.src]
kind = "datagen"
count = {n}
rate = 10000
shape = "sequence"
[sinks.out]
kind = "file"
path = "{}"
partition = "hash"
[restart]
strategy = "fixed_delay"
attempts = 2
delay = "100ms"
"#,
            dir.path().join("out").display()
        ),
    );
    let child = spawn(cluster.submit(&manifest, &[]));
    let log = cluster.coord.wait_for("job submitted", LIMIT);
    std::thread::sleep(Duration::from_secs(1));
    // Kill one of the workers running it.
    let line = log.lines().find(|l| l.contains("job submitted")).unwrap();
    let victim = (0..3)
        .find(|i| {
            let id = std::fs::read_to_string(dir.path().join(format!("w{i}/worker-id"))).unwrap();
            line.contains(id.trim())
        })
        .expect("a worker runs the job");
    cluster.workers[victim].kill();
    let out = wait_bounded(child, Duration::from_secs(60));
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("restarting (attempt 1)"), "{err}");
    let log = cluster.coord.wait_for("redeployed", LIMIT);
    assert!(
        log.contains("worker lost") || log.contains("worker gone"),
        "{log}"
    );
    let mut got: Vec<u64> = sink_lines(&dir.path().join("out"))
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got.len() as u64, n, "every record once");
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

/// The checkpointed word count with the transactional file sink on three workers: a random
/// worker killed with SIGKILL at random moments three times (a fresh worker joining each time),
/// the job restarting from its newest checkpoint each time, then the coordinator killed and
/// restarted (it resumes the job from its store, the workers register again, the client
/// follows the job again): every running count of every word is published exactly once.
#[test]
fn exactly_once_on_a_cluster_under_worker_kill_9() {
    let dir = scratch();
    let mut cluster = Cluster::start(dir.path(), &[2, 2, 2]);
    let text = text_with_vocabulary(3 << 20, 11, 5000);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let manifest = wordcount_manifest(
        dir.path(),
        &input,
        &format!(
            "delay_us = 30\n[checkpoint]\ninterval = \"100ms\"\nretain = 2\ndir = \"{}\"\n\
             [restart]\nstrategy = \"fixed_delay\"\nattempts = 10\ndelay = \"100ms\"\n",
            dir.path().join("checkpoints").display()
        ),
    );
    let child = spawn(cluster.submit(&manifest, &["--set", "job.parallelism=4"]));
    let mut seed: u64 = 0x5eed;
    for kill in 0..3 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Once the current attempt runs, a while into it.
        cluster.coord.wait_for("job submitted", LIMIT);
        cluster
            .coord
            .wait_for_count("redeployed from", kill, Duration::from_secs(60));
        let log = cluster.coord.stderr();
        std::thread::sleep(Duration::from_millis(300 + (seed >> 33) % 700));
        // A worker of the current attempt (placed by the last submission or redeployment).
        let placed = log
            .lines()
            .rfind(|l| l.contains("job submitted") || l.contains("redeployed from"))
            .expect("the placement is logged")
            .to_string();
        let running: Vec<usize> = (0..cluster.workers.len())
            .filter(|&i| placed.contains(&cluster.worker_id(i)))
            .collect();
        let victim = running[(seed >> 40) as usize % running.len()];
        cluster.workers[victim].kill();
        cluster.workers.remove(victim);
        cluster.names.remove(victim);
        let name = format!("fresh{kill}");
        let fresh = worker(dir.path(), &name, &cluster.addr, Some(&cluster.token), 2);
        fresh.wait_for("registered", LIMIT);
        cluster.workers.push(fresh);
        cluster.names.push(name);
    }
    // The coordinator, killed a while into the fourth attempt and started again.
    cluster
        .coord
        .wait_for_count("redeployed from", 3, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    cluster.restart_coordinator("coord-again");
    let log = cluster
        .coord
        .wait_for("redeployed from", Duration::from_secs(60));
    assert!(
        log.contains("resuming the job after a restart of the coordinator"),
        "{log}"
    );
    let out = wait_bounded(child, Duration::from_secs(180));
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.matches("restarting (attempt").count() >= 3, "{err}");
    assert!(err.contains("lost the coordinator"), "{err}");
    let out_dir = dir.path().join("out");
    let hidden: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "left in progress: {hidden:?}");
    assert_running_counts(&sink_lines(&out_dir), &count_words(&text), 1);
}

/// `weir run --from` against a cluster: a checkpointed job cancelled with Ctrl-C (its
/// checkpoints kept) resumes on the cluster from its newest checkpoint, at another parallelism,
/// and publishes every running count exactly once; a checkpoint of another shape is refused
/// by name.
#[test]
fn from_resumes_a_cancelled_job_on_the_cluster() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[2, 2]);
    let text = text_with_vocabulary(2 << 20, 5, 3000);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let manifest = wordcount_manifest(
        dir.path(),
        &input,
        &format!(
            "delay_us = 30\n[checkpoint]\ninterval = \"100ms\"\nretain_on_cancel = true\ndir = \"{}\"\n",
            checkpoints.display()
        ),
    );
    let child = spawn(cluster.submit(&manifest, &["--set", "job.parallelism=3"]));
    let start = Instant::now();
    while !std::fs::read_dir(&checkpoints)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("_metadata").exists())
    {
        assert!(start.elapsed() < LIMIT, "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let out = wait_bounded(child, LIMIT);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("cancelled by the user"));

    // Another shape: other key groups.
    let out = cluster.run(
        &manifest,
        &[
            "--from",
            checkpoints.to_str().unwrap(),
            "--set",
            "job.max_parallelism=64",
        ],
    );
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("key groups (job.max_parallelism)"), "{err}");

    let out = cluster.run(
        &manifest,
        &[
            "--from",
            checkpoints.to_str().unwrap(),
            "--set",
            "job.parallelism=4",
        ],
    );
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    let log = cluster.coord.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("job submitted") && l.contains("from checkpoint")),
        "{log}"
    );
    let out_dir = dir.path().join("out");
    assert_running_counts(&sink_lines(&out_dir), &count_words(&text), 1);
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// Backpressure across the network: an unthrottled source on one worker, slow sinks on it and
/// on another; the source is held to the sinks' pace by credit (what it has read and the sinks
/// have not written stays within the channels' buffers), the workers' memory stays small, and
/// every record arrives once.
#[test]
fn backpressure_holds_a_fast_source_to_slow_sinks_on_another_worker() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[1, 1]);
    let n = 8000u64;
    let out_dir = dir.path().join("out");
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["src -> out"]
[job]
name = "backpressure"
buffer_bytes = 1024
[sources.src]
kind = "datagen"
count = {n}
shape = "sequence"
[sinks.out]
kind = "file"
path = "{}"
parallelism = 2
partition = "rebalance"
delay_us = 1000
"#,
            out_dir.display()
        ),
    );
    let mut cmd = cluster.submit(&manifest, &[]);
    cmd.env("WEIR_PROGRESS_MS", "200");
    let child = spawn(cmd);
    let pids: Vec<u32> = cluster.workers.iter().map(|w| w.child.id()).collect();
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        peak = pids.iter().map(|&p| rss_mib(p)).max().unwrap().max(peak);
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = wait_bounded(child, Duration::from_secs(60));
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    // The progress lines: records read by the source and written by the sinks so far.
    let mut lines = 0;
    for line in err.lines().filter(|l| l.contains(" records/s)  out ")) {
        let number = |after: &str| -> u64 {
            line.split(after)
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (read, written) = (number(" in "), number(" out "));
        // In flight: at most the channels' buffers (some 30 of ~60 records), and what the
        // sinks wrote since their worker's last report (~0.5 s at 2000 records/s).
        assert!(
            read <= written + 4000,
            "the source ran ahead: {read} read, {written} written"
        );
        lines += 1;
    }
    assert!(lines >= 5, "progress was reported:\n{err}");
    assert!(
        peak < 200,
        "a worker's resident memory peaked at {peak} MiB"
    );
    let mut got: Vec<u64> = sink_lines(&out_dir)
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

/// No head-of-line blocking: two channels between the same two workers (one connection); the
/// first stalled by a sink writing ten records a second, the second runs to its end at full
/// rate.
#[test]
fn a_stalled_channel_does_not_hold_back_another_between_the_same_workers() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[1, 1]);
    let (slow, fast) = (dir.path().join("slow"), dir.path().join("fast"));
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["src1 -> slow", "src2 -> fast"]
[job]
name = "two-lanes"
[sources.src1]
kind = "datagen"
shape = "sequence"
[sources.src2]
kind = "datagen"
count = 200000
shape = "sequence"
[sinks.slow]
kind = "file"
path = "{}"
parallelism = 2
partition = "rebalance"
delay_us = 100000
[sinks.fast]
kind = "file"
path = "{}"
parallelism = 2
partition = "rebalance"
"#,
            slow.display(),
            fast.display()
        ),
    );
    let child = spawn(cluster.submit(&manifest, &[]));
    cluster.coord.wait_for("job submitted", LIMIT);
    // Subtask 1 of each sink runs on the second worker: both of its channels cross the
    // network, on the one connection between the two workers.
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while lines(&fast.join("part-1")) < 100_000 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the fast channel is held back: {} of 100000 records after 30 s",
            lines(&fast.join("part-1"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stalled = lines(&slow.join("part-1"));
    assert!(stalled < 1000, "the slow channel wrote {stalled} records");
    interrupt(&child);
    let out = wait_bounded(child, LIMIT);
    assert!(stderr_of(&out).contains("cancelled by the user"));
    // The source blocked on the stalled remote channel stops at once: nothing is abandoned.
    for w in &cluster.workers {
        let log = w.wait_for("part ended", LIMIT);
        assert!(!log.contains("did not stop within"), "{log}");
    }
}

/// A worker whose network buffer pool cannot hold a part's channels refuses the part, and the
/// job fails saying so.
#[test]
fn a_part_over_the_network_buffer_pool_is_refused() {
    let dir = scratch();
    let (coord, addr) = coordinator(dir.path(), "coord");
    let token = std::fs::read_to_string(dir.path().join("coord/join-token")).unwrap();
    let w = worker_with(
        dir.path(),
        "small",
        &addr,
        Some(token.trim()),
        2,
        &["--network-mib", "1"],
    );
    w.wait_for("registered", LIMIT);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, text(1000, 1)).unwrap();
    let manifest = wordcount_manifest(dir.path(), &input, "");
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap()])
        .args([
            "--set",
            "job.parallelism=2",
            "--set",
            "job.buffer_bytes=1048576",
        ])
        .args(["--coordinator", &addr, "--token", token.trim()]);
    let out = run_bounded(cmd, LIMIT);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("network buffer pool (--network-mib = 1)"),
        "{err}"
    );
    drop(coord);
}

/// GETs `http://addr/metrics` (plain HTTP/1.1 over loopback); the body.
fn scrape(log: &str) -> String {
    use std::io::{Read, Write};
    let addr = log
        .lines()
        .find_map(|l| l.split("metrics at http://").nth(1))
        .and_then(|l| l.split('/').next())
        .expect("the metrics address is logged")
        .to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// `/metrics` on the coordinator and on the workers (Prometheus text): the cluster's workers
/// and slots; per task records and bytes in and out, busy, backpressured and idle time per
/// second, queued buffers and credit per channel; per job checkpoints and restarts.
#[test]
fn every_cluster_process_serves_its_metrics() {
    let dir = scratch();
    let data = dir.path().join("coord");
    let (coord, addr) = coordinator_with(
        dir.path(),
        "coord",
        "127.0.0.1:0",
        &["--metrics", "127.0.0.1:0"],
    );
    let token = std::fs::read_to_string(data.join("join-token")).unwrap();
    let workers: Vec<Proc> = ["a", "b"]
        .iter()
        .map(|name| {
            worker_with(
                dir.path(),
                name,
                &addr,
                Some(token.trim()),
                1,
                &["--metrics", "127.0.0.1:0"],
            )
        })
        .collect();
    for w in &workers {
        w.wait_for("registered", LIMIT);
    }
    let m = scrape(&coord.wait_for("metrics at", LIMIT));
    assert!(m.contains("weir_cluster_workers 2"), "{m}");
    assert!(m.contains("weir_cluster_free_slots 2"), "{m}");
    // A slow job across both workers, with checkpoints.
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["src -> out"]
[job]
name = "watched"
# Small buffers: a barrier does not wait long behind the records queued for the slow sinks.
buffer_bytes = 1024
[sources.src]
kind = "datagen"
shape = "sequence"
[sinks.out]
kind = "file"
path = "{}"
parallelism = 2
partition = "rebalance"
delay_us = 1000
[checkpoint]
interval = "100ms"
dir = "{}"
"#,
            dir.path().join("out").display(),
            dir.path().join("checkpoints").display()
        ),
    );
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap()]).args([
        "--coordinator",
        &addr,
        "--token",
        token.trim(),
    ]);
    let child = spawn(cmd);
    coord.wait_for("job submitted", LIMIT);
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    let m = loop {
        let m = scrape(&coord.stderr());
        if m.contains("weir_cluster_job_last_checkpoint{job=\"watched-") {
            break m;
        }
        assert!(start.elapsed() < LIMIT, "no checkpoint completed:\n{m}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(m.contains("weir_cluster_jobs_running 1"), "{m}");
    let both = format!(
        "{}{}",
        scrape(&workers[0].stderr()),
        scrape(&workers[1].stderr())
    );
    for needle in [
        "weir_task_records_in_total{job=\"watched-",
        "task=\"src-0\"",
        "task=\"out-1\"",
        "weir_task_bytes_out_total{",
        "weir_task_busy_ms_per_second{",
        "weir_task_backpressured_ms_per_second{",
        "weir_task_idle_ms_per_second{",
        "weir_channel_queued_buffers{",
        "weir_channel_credit{",
        "weir_checkpoints_completed_total{",
        "weir_job_restarts_total{",
        "weir_worker_network_pool_free_bytes ",
        "weir_remote_output_queued_buffers{job=\"watched-",
    ] {
        assert!(both.contains(needle), "{needle} in:\n{both}");
    }
    // The source waits for credit most of the time: the sinks are slow.
    let source_bp = both
        .lines()
        .find(|l| l.starts_with("weir_task_backpressured_ms_per_second") && l.contains("src-0"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap();
    assert!(source_bp > 500, "{both}");
    interrupt(&child);
    wait_bounded(child, LIMIT);
}

/// Refusals on the wire: bytes that break the data plane's protocol close only their
/// connection (the worker says why, stays registered and runs the next job); a worker whose
/// certificate another cluster's CA signed is refused by the coordinator, which logs it.
#[test]
fn a_corrupt_frame_or_a_foreign_certificate_is_refused() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[1, 1]);
    let log = cluster.workers[0].stderr();
    let data_addr: std::net::SocketAddr = log
        .lines()
        .find_map(|l| l.split("data_addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .expect("the data address is logged")
        .parse()
        .unwrap();
    let victim = cluster.worker_id(0);
    // Worker 1's identity, as a process of the cluster would hold it.
    let w1 = dir.path().join(&cluster.names[1]);
    let read = |f: &str| std::fs::read_to_string(w1.join(f)).unwrap();
    let identity = weir::net::pki::Identity {
        cert_pem: read("cert.pem"),
        key_pem: read("key.pem"),
        ca_pem: read("ca.pem"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let closed = runtime.block_on(async {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(weir::net::pki::client_config(&identity).unwrap());
        let conn = endpoint
            .connect(data_addr, &format!("worker-{victim}"))
            .unwrap()
            .await
            .unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        // A frame of a wire version nobody speaks.
        send.write_all(&[0, 0, 0, 10, 0xEE, 0xEE, 1, 2, 3, 4, 5, 6, 7, 8])
            .await
            .unwrap();
        let closed = tokio::time::timeout(LIMIT, conn.closed()).await;
        endpoint.close(0u32.into(), b"");
        closed
            .expect("the worker closes the connection")
            .to_string()
    });
    assert!(closed.contains("version"), "{closed}");
    let log = cluster.workers[0].wait_for("closed the data connection", LIMIT);
    assert!(log.contains("version"), "{log}");
    // The worker is still a member, and runs the next job.
    let input = dir.path().join("input.txt");
    std::fs::write(&input, text(10_000, 2)).unwrap();
    let manifest = wordcount_manifest(dir.path(), &input, "");
    let out = cluster.run(&manifest, &["--set", "job.parallelism=2"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!cluster.coord.stderr().contains("worker lost"));

    // A worker of another cluster: its certificate is not signed by this coordinator's CA.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (coord_b, addr_b) = coordinator(&other, "coord");
    let mut stranger = worker(dir.path(), &cluster.names[1], &addr_b, None, 1);
    assert!(!stranger.wait_exit(LIMIT).success());
    assert!(
        stranger
            .stderr()
            .contains("is not of the cluster this worker joined"),
        "{}",
        stranger.stderr()
    );
    coord_b.wait_for("refused a connection", LIMIT);
}

/// Event time across workers: watermarks travel with the records over QUIC, each window task
/// takes the minimum over its channels from both workers, and the rows are local mode's.
#[test]
fn event_time_windows_across_workers_give_the_local_rows() {
    let dir = scratch();
    let cluster = Cluster::start(dir.path(), &[2, 2]);
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["gen -> sums", "sums -> out"]
[job]
chaining = false
[sources.gen]
kind = "wasm"
component = "{gen}"
config = {{ workload = "window", n = 200000 }}
watermarks = {{ strategy = "bounded_out_of_orderness", max_delay = "2s", interval = "20ms" }}
[windows.sums]
assigner = {{ kind = "tumbling", size = "1s" }}
function = {{ kind = "aggregate", component = "{sum_count}" }}
[sinks.out]
kind = "file"
path = "out"
"#,
            gen = component("bench_gen"),
            sum_count = component("windows_sum_count"),
        ),
    );
    let local_out = dir.path().join("local");
    run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=4",
        "--set",
        &format!("sinks.out.path={}", local_out.display()),
    ]);
    let out = cluster.run(&manifest, &["--set", "job.parallelism=4"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let sorted = |d: &Path| {
        let mut lines = sink_lines(d);
        lines.sort();
        lines
    };
    let local = sorted(&local_out);
    assert!(local.len() > 10_000, "{}", local.len());
    assert!(
        sorted(&dir.path().join("out")) == local,
        "the cluster's rows differ"
    );
}
