//! The cluster's processes for the end-to-end tests: a coordinator and workers on 127.0.0.1,
//! each a real `weir` process whose output goes to files, killed when dropped.

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process whose stdout and stderr go to files in `dir`, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub out: PathBuf,
    pub err: PathBuf,
}

impl Proc {
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Proc {
        let (out, err) = (
            dir.join(format!("{name}.out")),
            dir.join(format!("{name}.err")),
        );
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env("WEIR_LOG", "warn,weir=info")
            .env("WEIR_CACHE_DIR", root().join("target/test-component-cache"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("weir starts");
        Proc { child, out, err }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until `what` appears in its stderr (or stdout), up to `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration) -> String {
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

    /// Waits until `what` has appeared `n` times in its stderr (or stdout), up to `limit`.
    pub fn wait_for_count(&self, what: &str, n: usize, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let all = format!("{}{}", self.stdout(), self.stderr());
            if all.matches(what).count() >= n {
                return all;
            }
            assert!(
                start.elapsed() < limit,
                "{what:?} did not appear {n} times within {limit:?}:\n{all}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit on its own, up to `limit`; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
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

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub const LIMIT: Duration = Duration::from_secs(20);

/// Starts a coordinator in `dir/coord`; returns it and its address.
pub fn coordinator(dir: &Path, name: &str) -> (Proc, String) {
    coordinator_at(dir, name, "127.0.0.1:0")
}

/// Starts a coordinator in `dir/coord` listening on `listen`; returns it and its address.
pub fn coordinator_at(dir: &Path, name: &str, listen: &str) -> (Proc, String) {
    coordinator_with(dir, name, listen, &[])
}

/// [`coordinator_at`] with `extra` arguments.
pub fn coordinator_with(dir: &Path, name: &str, listen: &str, extra: &[&str]) -> (Proc, String) {
    let data = dir.join("coord");
    let mut args = vec![
        "coordinator",
        "--listen",
        listen,
        "--data-dir",
        data.to_str().unwrap(),
        "--heartbeat-timeout",
        "1s",
    ];
    args.extend(extra);
    if !extra.contains(&"--http") {
        args.extend(["--http", "127.0.0.1:0"]);
    }
    let c = Proc::start(dir, name, &args);
    let out = c.wait_for("HTTP API at", LIMIT);
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("weir coordinator listening on "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the address is printed")
        .to_string();
    (c, addr)
}

/// Where coordinator `c` serves its HTTP API: `http://ADDR`.
pub fn api_of(c: &Proc) -> String {
    let out = c.wait_for("HTTP API at", LIMIT);
    out.lines()
        .find_map(|l| l.strip_prefix("HTTP API at "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|l| l.strip_suffix("/v1"))
        .expect("the API's address is printed")
        .to_string()
}

pub fn worker(dir: &Path, name: &str, addr: &str, token: Option<&str>, slots: u32) -> Proc {
    worker_with(dir, name, addr, token, slots, &[])
}

pub fn worker_with(
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

/// A coordinator and workers on 127.0.0.1, ready for jobs.
pub struct Cluster {
    pub dir: PathBuf,
    pub coord: Proc,
    pub addr: String,
    pub token: String,
    pub workers: Vec<Proc>,
    /// Each worker's name: its data directory in `dir`.
    pub names: Vec<String>,
}

impl Cluster {
    /// Starts a coordinator and one worker per entry of `slots` (`w0`, `w1`, ...).
    pub fn start(dir: &Path, slots: &[u32]) -> Cluster {
        // A fixed port, so that the coordinator can be restarted on it.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (coord, addr) = coordinator_at(dir, "coord", &format!("127.0.0.1:{port}"));
        let token = std::fs::read_to_string(dir.join("coord/join-token")).unwrap();
        let token = token.trim().to_string();
        let names: Vec<String> = (0..slots.len()).map(|i| format!("w{i}")).collect();
        let workers: Vec<Proc> = (names.iter().zip(slots))
            .map(|(name, &n)| worker(dir, name, &addr, Some(&token), n))
            .collect();
        for w in &workers {
            w.wait_for("registered", LIMIT);
        }
        Cluster {
            dir: dir.to_path_buf(),
            coord,
            addr,
            token,
            workers,
            names,
        }
    }

    /// Kills the coordinator (SIGKILL) and starts it again on the same address and data
    /// directory.
    pub fn restart_coordinator(&mut self, name: &str) {
        self.coord.kill();
        self.coord = coordinator_at(&self.dir, name, &self.addr).0;
    }

    /// Starts one more worker with `slots`, registered when this returns.
    pub fn add_worker(&mut self, slots: u32) {
        let name = format!("w{}", self.names.len());
        let w = worker(&self.dir, &name, &self.addr, Some(&self.token), slots);
        w.wait_for("registered", LIMIT);
        self.workers.push(w);
        self.names.push(name);
    }

    /// Worker `i`'s id.
    pub fn worker_id(&self, i: usize) -> String {
        let id = std::fs::read_to_string(self.dir.join(&self.names[i]).join("worker-id"));
        id.unwrap().trim().to_string()
    }

    /// `weir run MANIFEST --coordinator ... --token ...` with `extra` arguments.
    pub fn submit(&self, manifest: &Path, extra: &[&str]) -> Command {
        let mut cmd = weir();
        cmd.args(["run", manifest.to_str().unwrap()])
            .args(extra)
            .args(["--coordinator", &self.addr, "--token", &self.token])
            .env("WEIR_LOG", "warn,weir=info");
        cmd
    }

    /// Runs the job on the cluster to its end.
    pub fn run(&self, manifest: &Path, extra: &[&str]) -> std::process::Output {
        run_bounded(self.submit(manifest, extra), Duration::from_secs(120))
    }
}

pub fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Each sink file's lines, sorted: what a run wrote, by subtask, whatever the order records
/// arrived in.
pub fn parts_sorted(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .expect("sink dir exists")
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    parts
        .into_iter()
        .map(|p| {
            let mut lines: Vec<String> = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            lines.sort();
            (p.file_name().unwrap().to_string_lossy().to_string(), lines)
        })
        .collect()
}
