//! The cluster's processes, for real: a coordinator and workers on 127.0.0.1 over QUIC with
//! mutual TLS. Workers join with the token, register their slots and send heartbeats; a wrong
//! token, a duplicate worker and a worker of another cluster are refused and the refusals
//! logged; a killed worker is declared lost by heartbeat timeout; a restarted coordinator keeps
//! its CA and token, and a worker that joined before registers again without the token.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process whose stdout and stderr go to files in `dir`, killed when dropped.
struct Proc {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Proc {
        let (out, err) = (
            dir.join(format!("{name}.out")),
            dir.join(format!("{name}.err")),
        );
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env("WEIR_LOG", "warn,weir=info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("weir starts");
        Proc { child, out, err }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until `what` appears in its stderr (or stdout), up to `limit`.
    fn wait_for(&self, what: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let all = format!("{}{}", self.stdout(), self.stderr());
            if all.contains(what) {
                return all;
            }
            assert!(
                start.elapsed() < limit,
                "{what:?} did not appear within {limit:?}:\n{all}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit on its own, up to `limit`; its exit status.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "did not exit within {limit:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

const LIMIT: Duration = Duration::from_secs(20);

/// Starts a coordinator in `dir/coord`; returns it and its address.
fn coordinator(dir: &Path, name: &str) -> (Proc, String) {
    coordinator_at(dir, name, "127.0.0.1:0")
}

/// Starts a coordinator in `dir/coord` listening on `listen`; returns it and its address.
fn coordinator_at(dir: &Path, name: &str, listen: &str) -> (Proc, String) {
    let data = dir.join("coord");
    let c = Proc::start(
        dir,
        name,
        &[
            "coordinator",
            "--listen",
            listen,
            "--data-dir",
            data.to_str().unwrap(),
            "--heartbeat-timeout",
            "1s",
        ],
    );
    let out = c.wait_for("join a worker with", LIMIT);
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("weir coordinator listening on "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the address is printed")
        .to_string();
    (c, addr)
}

fn worker(dir: &Path, name: &str, addr: &str, token: Option<&str>, slots: u32) -> Proc {
    worker_with(dir, name, addr, token, slots, &[])
}

fn worker_with(
    dir: &Path,
    name: &str,
    addr: &str,
    token: Option<&str>,
    slots: u32,
    extra: &[&str],
) -> Proc {
    let data = dir.join(name);
    let slots = slots.to_string();
    let mut args = vec![
        "worker",
        "--join",
        addr,
        "--slots",
        &slots,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    if let Some(t) = token {
        args.extend(["--token", t]);
    }
    args.extend(extra);
    Proc::start(dir, name, &args)
}

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
