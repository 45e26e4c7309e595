//! `weir bench --job network`: what the data plane carries on this machine, in one process
//! over loopback: raw QUIC (one stream, 32 KiB writes: the limit), a remote channel (frames,
//! credit, the blocking sender a task uses, delivery to an inbox) and, for scale, an
//! in-process channel between two threads. Each moves the same number of 32 KiB buffers;
//! the remote channel checks it got every buffer once, in order.

use crate::net::data::{
    Delivery, Inbox, RemoteInputs, RemoteSender, Route, Router, frame_limit, serve_inputs,
};
use crate::net::frame::ChannelId;
use crate::net::loopback::Loopback;
use crate::worker::channel::{Gate, Received};
use anyhow::Result;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const BUFFER: usize = 32 * 1024;

/// The process's CPU time so far (user + system).
fn cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Wall and CPU time of `f`.
fn measure<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration, Duration)> {
    let (wall, cpu0) = (Instant::now(), cpu());
    let out = f()?;
    Ok((out, wall.elapsed(), cpu() - cpu0))
}

/// One buffer: its index, then filler.
fn buffer(i: u64) -> Vec<u8> {
    let mut b = vec![0u8; BUFFER];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

/// Counts buffers, checking their order.
#[derive(Default)]
struct Counter {
    state: Mutex<(u64, bool, bool)>,
    done: Condvar,
    inputs: Mutex<Option<Arc<RemoteInputs>>>,
}

impl Inbox for Counter {
    fn deliver(&self, channel: usize, delivery: Delivery) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match delivery {
            Delivery::Data(b) => {
                let i = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
                s.2 |= i != s.0 || b.len() != BUFFER;
                s.0 += 1;
                drop(s);
                if let Some(inputs) = &*self.inputs.lock().unwrap_or_else(|e| e.into_inner()) {
                    let _ = inputs.consumed(channel);
                }
            }
            Delivery::Barrier(_) | Delivery::Watermark(_) => {}
            Delivery::End => {
                s.1 = true;
                drop(s);
                self.done.notify_all();
            }
        }
    }

    fn broken(&self, _channel: usize, why: String) {
        tracing::error!("the benchmark's channel broke: {why}");
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = true;
        s.2 = true;
        drop(s);
        self.done.notify_all();
    }
}

/// Runs the network benchmark and prints its line; `false` if a check failed.
pub fn run(quick: bool) -> Result<bool> {
    let n: u64 = if quick { 2_000 } else { 60_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let connect = || {
        runtime
            .block_on(Loopback::connect())
            .map_err(anyhow::Error::msg)
    };

    // Raw QUIC: one stream, 32 KiB writes, read as fast as it comes.
    let link = connect()?;
    let (client_conn, server_conn) = (link.client.clone(), link.server.clone());
    let (raw, raw_wall, raw_cpu) = measure(|| {
        runtime.block_on(async {
            let reader = tokio::spawn(async move {
                let (_send, mut recv) = server_conn.accept_bi().await?;
                let mut total = 0u64;
                let mut buf = vec![0u8; 64 * 1024];
                while let Some(k) = recv.read(&mut buf).await? {
                    total += k as u64;
                }
                anyhow::Ok(total)
            });
            let (mut send, _recv) = client_conn.open_bi().await?;
            let chunk = buffer(0);
            for _ in 0..n {
                send.write_all(&chunk).await?;
            }
            send.finish()?;
            reader.await?
        })
    })?;
    link.close();

    // A remote channel: the sender a task uses, credit, delivery to an inbox that consumes
    // each buffer at once.
    let link = connect()?;
    let (client_conn, server_conn) = (link.client.clone(), link.server.clone());
    let inputs = RemoteInputs::new(1, 2, 8);
    let counter = Arc::new(Counter::default());
    *counter.inputs.lock().unwrap_or_else(|e| e.into_inner()) = Some(inputs.clone());
    let id = ChannelId {
        job: "bench".into(),
        attempt: 0,
        edge: 0,
        from: 0,
        to: 0,
    };
    let serving = {
        let (inputs, inbox) = (inputs.clone(), counter.clone());
        let router = Router::single(
            id.clone(),
            Route {
                inputs,
                inbox,
                channel: 0,
                frame_limit: frame_limit(BUFFER),
            },
        );
        runtime.spawn(serve_inputs(server_conn, router))
    };
    let sender = runtime.block_on(RemoteSender::open(&client_conn, id, 4))?;
    let (_, channel_wall, channel_cpu) = measure(|| {
        for i in 0..n {
            sender.send(buffer(i)).map_err(anyhow::Error::msg)?;
        }
        sender.end().map_err(anyhow::Error::msg)?;
        let mut s = counter.state.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(300);
        while !s.1 && Instant::now() < deadline {
            s = counter
                .done
                .wait_timeout(s, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    })?;
    let (received, ended, disordered) = *counter.state.lock().unwrap_or_else(|e| e.into_inner());
    link.client.close(0u32.into(), b"");
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), serving).await });

    // In process: a gate's channel between two threads.
    let gate = Gate::new(1, crate::checkpoint::Mode::ExactlyOnce);
    let tx = gate.sender(0);
    let (local_ok, local_wall, local_cpu) = measure(|| {
        let producer = std::thread::spawn(move || {
            for i in 0..n {
                if tx.send(buffer(i)).is_err() {
                    return;
                }
            }
            let _ = tx.end();
        });
        let mut got = 0u64;
        let mut ordered = true;
        loop {
            match gate.recv(None) {
                Received::Data(b) => {
                    ordered &= b[..8] == got.to_le_bytes();
                    got += 1;
                }
                Received::AllEnded => break,
                _ => {}
            }
        }
        let _ = producer.join();
        Ok(ordered && got == n)
    })?;
    link.close();

    let mib = (n * BUFFER as u64) as f64 / (1 << 20) as f64;
    let rate = |wall: Duration| mib / wall.as_secs_f64();
    let per_buffer = |cpu: Duration| cpu.as_secs_f64() * 1e6 / n as f64;
    let ok = raw == n * BUFFER as u64 && received == n && ended && !disordered && local_ok;
    println!(
        "job=network buffers={n} buffer_kib={} raw_quic_mib_s={:.0} raw_quic_cpu_us_per_buffer={:.1} \
         channel_mib_s={:.0} channel_cpu_us_per_buffer={:.1} channel_vs_raw={:.2} \
         in_process_mib_s={:.0} in_process_cpu_us_per_buffer={:.1} {}",
        BUFFER / 1024,
        rate(raw_wall),
        per_buffer(raw_cpu),
        rate(channel_wall),
        per_buffer(channel_cpu),
        raw_wall.as_secs_f64() / channel_wall.as_secs_f64(),
        rate(local_wall),
        per_buffer(local_cpu),
        if ok { "verified=ok" } else { "verified=FAILED" }
    );
    Ok(ok)
}
