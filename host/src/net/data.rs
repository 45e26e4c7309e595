//! The data plane: channels between subtasks on different workers, one QUIC stream per channel
//! over one connection per worker pair, so that a stalled channel never blocks another (the
//! flaw of one TCP connection per worker pair, seed 000). Each stream opens with the channel's
//! id, then carries data buffers and events forward and credit back, under the credit-based
//! flow control of [`super::credit`].
//!
//! Task threads are synchronous (a mailbox loop each); the streams are driven by async tasks.
//! A [`RemoteSender`] blocks its task while its bounded queue is full (backpressure); the
//! receiving side hands what arrives to an [`Inbox`] (the task's input gate) and is told by
//! [`RemoteInputs::consumed`] when the task has taken a buffer, which returns its credit.

use super::credit::{CreditError, InputCredits, OutputQueue, Send};
use super::frame::{ChannelId, Frame};
use super::stream::{FrameReader, ReadError};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::{Notify, mpsc};

/// What a remote channel delivers to its receiving task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Data(Bytes),
    Barrier(u64),
    Watermark(i64),
    End,
}

/// Where a gate's remote channels deliver: the receiving task's input gate.
pub trait Inbox: std::marker::Send + Sync + 'static {
    fn deliver(&self, channel: usize, delivery: Delivery);
    /// The channel broke before its end (its connection failed or its peer broke the
    /// protocol): nothing more comes on it, and its task must fail over.
    fn broken(&self, channel: usize, why: String);
}

/// The longest data frame accepted: a buffer and its header, with room to spare.
pub fn frame_limit(buffer_bytes: usize) -> usize {
    buffer_bytes + 64 * 1024
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The receiving side of one gate's remote channels: their credit, and where each channel's
/// credit announcements go.
pub struct RemoteInputs {
    credits: Mutex<InputCredits>,
    /// Per channel: the credit announcements to its stream (set once its stream opened).
    announce: Vec<Mutex<Option<mpsc::UnboundedSender<u32>>>>,
}

impl RemoteInputs {
    /// `channels` remote channels with `exclusive` buffers each, sharing `floating` more.
    pub fn new(channels: usize, exclusive: u32, floating: u32) -> Arc<Self> {
        Arc::new(RemoteInputs {
            credits: Mutex::new(InputCredits::new(channels, exclusive, floating)),
            announce: (0..channels).map(|_| Mutex::new(None)).collect(),
        })
    }

    fn announce(&self, grants: Vec<(usize, u32)>) {
        for (channel, n) in grants {
            if let Some(tx) = lock(&self.announce[channel]).as_ref() {
                // The stream's writer is gone when the connection is: nothing to announce to.
                let _ = tx.send(n);
            }
        }
    }

    /// The task took a buffer of `channel`: its credit returns.
    pub fn consumed(&self, channel: usize) -> Result<(), CreditError> {
        let grants = lock(&self.credits).consumed(channel)?;
        self.announce(grants);
        Ok(())
    }

    /// Credit announced on `channel` and not yet used (a metric).
    pub fn credit(&self, channel: usize) -> u32 {
        lock(&self.credits).credit(channel)
    }
}

/// Why a remote channel failed: the connection it was on is closed, and the tasks on it fail
/// over.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Frame(#[from] super::frame::FrameError),
    #[error("{0}")]
    Credit(#[from] CreditError),
    #[error("a stream for an unknown channel: {0:?}")]
    UnknownChannel(ChannelId),
    #[error("a stream that did not open with its channel's id")]
    NotOpened,
    #[error("an unexpected {0} frame")]
    Unexpected(&'static str),
    #[error("the stream broke: {0}")]
    Stream(String),
}

impl From<ReadError> for DataError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Frame(e) => DataError::Frame(e),
            ReadError::Stream(why) => DataError::Stream(why),
        }
    }
}

/// Where one remote channel delivers: the receiving gate's remote inputs, its inbox, the
/// channel's index there, and the longest frame it accepts.
#[derive(Clone)]
pub struct Route {
    pub inputs: Arc<RemoteInputs>,
    pub inbox: Arc<dyn Inbox>,
    pub channel: usize,
    pub frame_limit: usize,
}

/// The remote channels a process expects, by id: where the streams arriving on any of its
/// connections deliver. A stream may arrive before its receiving task is set up (its sender
/// runs on another worker, started at the same time): it waits for its route up to `wait`.
pub struct Router {
    routes: Mutex<HashMap<ChannelId, Route>>,
    added: Notify,
    wait: std::time::Duration,
}

/// The longest frame a stream may send before it names its channel.
const OPEN_LIMIT: usize = 1024;

impl Router {
    pub fn new(wait: std::time::Duration) -> Arc<Self> {
        Arc::new(Router {
            routes: Mutex::default(),
            added: Notify::new(),
            wait,
        })
    }

    /// A router expecting the one channel `id`, delivered through `route` (for benchmarks
    /// and tests of a single channel).
    pub fn single(id: ChannelId, route: Route) -> Arc<Self> {
        let router = Router::new(std::time::Duration::from_secs(5));
        router.add(id, route);
        router
    }

    /// Expects channel `id`, delivered through `route`.
    pub fn add(&self, id: ChannelId, route: Route) {
        lock(&self.routes).insert(id, route);
        self.added.notify_waiters();
    }

    /// Forgets the channels of `job`'s `attempt` not yet opened (the attempt ended).
    pub fn remove_attempt(&self, job: &str, attempt: u32) {
        lock(&self.routes).retain(|id, _| id.job != job || id.attempt != attempt);
    }

    /// Channels expected and not yet opened.
    pub fn pending(&self) -> usize {
        lock(&self.routes).len()
    }

    /// The route of channel `id`, waiting for it to be added; taken, since a channel opens once.
    async fn take(&self, id: &ChannelId) -> Option<Route> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let added = self.added.notified();
            if let Some(route) = lock(&self.routes).remove(id) {
                return Some(route);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return None;
            }
        }
    }
}

/// Serves the remote channels that arrive on `conn`: each stream's first frame names its
/// channel, which `router` says where to deliver. A stream for a channel nobody expects is
/// refused alone (it may belong to an attempt that has ended here); a stream that breaks the
/// protocol closes the connection with the reason, and every channel still open on it reports
/// the break to its inbox, so that their tasks fail over. Returns when the connection ends,
/// with the first protocol error, if any.
pub async fn serve_inputs(conn: quinn::Connection, router: Arc<Router>) -> Result<(), DataError> {
    let mut streams = tokio::task::JoinSet::new();
    let mut failed = None;
    loop {
        tokio::select! {
            stream = conn.accept_bi() => {
                let Ok((send, recv)) = stream else { break };
                streams.spawn(serve_input(send, recv, router.clone()));
            }
            Some(done) = streams.join_next(), if !streams.is_empty() => {
                match done {
                    Ok(Err(DataError::UnknownChannel(id))) => {
                        tracing::warn!("refused a stream for a channel not expected here: {id:?}");
                    }
                    Ok(Err(e)) if failed.is_none() => {
                        conn.close(1u32.into(), e.to_string().as_bytes());
                        failed = Some(e);
                    }
                    _ => {}
                }
            }
        }
    }
    while let Some(done) = streams.join_next().await {
        if let Ok(Err(e)) = done
            && failed.is_none()
            && !matches!(e, DataError::UnknownChannel(_) | DataError::Stream(_))
        {
            failed = Some(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

async fn serve_input(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    router: Arc<Router>,
) -> Result<(), DataError> {
    let mut reader = FrameReader::new(recv, OPEN_LIMIT);
    let Some(Frame::Open(id)) = reader.next().await? else {
        return Err(DataError::NotOpened);
    };
    let Some(route) = router.take(&id).await else {
        let _ = send.reset(1u32.into());
        reader.stop();
        return Err(DataError::UnknownChannel(id));
    };
    reader.set_limit(route.frame_limit);
    let Route {
        inputs,
        inbox,
        channel,
        ..
    } = route;
    // Credit goes back on this stream, written by one task in the order granted. The queue
    // holds grants, whose sum never exceeds the gate's buffers: it stays small.
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    *lock(&inputs.announce[channel]) = Some(tx);
    let writer = tokio::spawn(async move {
        while let Some(mut n) = rx.recv().await {
            while let Ok(more) = rx.try_recv() {
                n += more;
            }
            if send.write_all(&Frame::Credit(n).to_bytes()).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
    });
    let initial = lock(&inputs.credits).open(channel);
    inputs.announce(vec![(channel, initial)]);
    let result = async {
        loop {
            match reader.next().await? {
                Some(Frame::Data { backlog, records }) => {
                    let grants = lock(&inputs.credits).received(channel, backlog)?;
                    inputs.announce(grants);
                    inbox.deliver(channel, Delivery::Data(records));
                }
                Some(Frame::Barrier(id)) => inbox.deliver(channel, Delivery::Barrier(id)),
                Some(Frame::Watermark(wm)) => inbox.deliver(channel, Delivery::Watermark(wm)),
                Some(Frame::EndOfPartition) => {
                    inbox.deliver(channel, Delivery::End);
                    return Ok(());
                }
                Some(Frame::Credit(_)) => return Err(DataError::Unexpected("credit")),
                Some(Frame::Open(_)) => return Err(DataError::Unexpected("open")),
                Some(Frame::Control(_)) => return Err(DataError::Unexpected("control")),
                None => {
                    return Err(DataError::Stream(
                        "it ended before its end of partition".into(),
                    ));
                }
            }
        }
    }
    .await;
    *lock(&inputs.announce[channel]) = None;
    if let Err(e) = &result {
        inbox.broken(channel, format!("the channel from {id:?} broke: {e}"));
    }
    let _ = writer.await;
    result
}

struct SenderState {
    queue: OutputQueue<Frame>,
    closed: Option<String>,
}

/// The sending end of one remote channel, for a task thread.
pub struct RemoteSender {
    state: Arc<(Mutex<SenderState>, Condvar)>,
    wake: Arc<Notify>,
}

/// The channel's connection is gone: the task fails over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the remote channel is closed: {0}")]
pub struct Closed(pub String);

impl RemoteSender {
    /// Opens channel `id` on `conn`, holding up to `capacity` buffers before its task waits.
    pub async fn open(
        conn: &quinn::Connection,
        id: ChannelId,
        capacity: u32,
    ) -> Result<RemoteSender, DataError> {
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| DataError::Stream(e.to_string()))?;
        send.write_all(&Frame::Open(id).to_bytes())
            .await
            .map_err(|e| DataError::Stream(e.to_string()))?;
        let state = Arc::new((
            Mutex::new(SenderState {
                queue: OutputQueue::new(capacity),
                closed: None,
            }),
            Condvar::new(),
        ));
        let wake = Arc::new(Notify::new());
        let close = |state: &Arc<(Mutex<SenderState>, Condvar)>, why: String| {
            lock(&state.0).closed.get_or_insert(why);
            state.1.notify_all();
        };
        // Credit coming back.
        let (s, w) = (state.clone(), wake.clone());
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv, 1024);
            loop {
                match reader.next().await {
                    Ok(Some(Frame::Credit(n))) => {
                        lock(&s.0).queue.add_credit(n);
                        w.notify_one();
                    }
                    // The receiver finished its side: nothing sent after this could be read.
                    Ok(None) => return close(&s, "the receiver ended the channel".into()),
                    Ok(Some(_)) => return close(&s, "the receiver sent a non-credit frame".into()),
                    Err(e) => return close(&s, e.to_string()),
                }
            }
        });
        // Frames going out, as credit allows.
        let (s, w) = (state.clone(), wake.clone());
        tokio::spawn(async move {
            let mut out = BytesMut::new();
            loop {
                let mut ended = false;
                {
                    let mut st = lock(&s.0);
                    while let Some(next) = st.queue.next_send() {
                        let frame = match next {
                            Send::Data { buffer, backlog } => match buffer {
                                Frame::Data { records, .. } => Frame::Data { backlog, records },
                                other => other,
                            },
                            Send::Event(e) => e,
                        };
                        ended |= frame == Frame::EndOfPartition;
                        frame.encode(&mut out);
                        if out.len() >= 256 * 1024 {
                            break;
                        }
                    }
                }
                s.1.notify_all();
                if !out.is_empty() {
                    if let Err(e) = send.write_all(&out).await {
                        return close(&s, e.to_string());
                    }
                    out.clear();
                    if ended {
                        let _ = send.finish();
                        let _ = send.stopped().await;
                        return;
                    }
                    continue;
                }
                if lock(&s.0).closed.is_some() {
                    return;
                }
                w.notified().await;
            }
        });
        Ok(RemoteSender { state, wake })
    }

    /// Sends a buffer, waiting while the channel's queue is full: backpressure.
    pub fn send(&self, records: Vec<u8>) -> Result<(), Closed> {
        let (m, cv) = &*self.state;
        let mut st = lock(m);
        let mut frame = Frame::Data {
            backlog: 0,
            records: Bytes::from(records),
        };
        loop {
            if let Some(why) = &st.closed {
                return Err(Closed(why.clone()));
            }
            match st.queue.push(frame) {
                Ok(()) => break,
                Err(back) => {
                    frame = back;
                    st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    fn event(&self, frame: Frame) -> Result<(), Closed> {
        let mut st = lock(&self.state.0);
        if let Some(why) = &st.closed {
            return Err(Closed(why.clone()));
        }
        if matches!(frame, Frame::Watermark(_)) {
            // A watermark not yet sent is superseded by a newer one.
            st.queue
                .push_event_replacing(frame, |f| matches!(f, Frame::Watermark(_)));
        } else {
            st.queue.push_event(frame);
        }
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// Sends barrier `id` after everything sent before it.
    pub fn barrier(&self, id: u64) -> Result<(), Closed> {
        self.event(Frame::Barrier(id))
    }

    /// Sends watermark `wm` after everything sent before it.
    pub fn watermark(&self, wm: i64) -> Result<(), Closed> {
        self.event(Frame::Watermark(wm))
    }

    /// Ends the channel: nothing follows.
    pub fn end(&self) -> Result<(), Closed> {
        self.event(Frame::EndOfPartition)
    }

    /// Buffers waiting to be sent (the output queue's length, a metric).
    pub fn queued(&self) -> u32 {
        lock(&self.state.0).queue.queued()
    }

    /// Closes the channel from another thread (its attempt was cancelled): a task waiting in
    /// [`RemoteSender::send`] wakes with [`Closed`], and the stream ends.
    pub fn closer(&self) -> impl Fn(&str) + std::marker::Send + Sync + 'static {
        let (state, wake) = (self.state.clone(), self.wake.clone());
        move |why| {
            lock(&state.0).closed.get_or_insert_with(|| why.to_string());
            state.1.notify_all();
            wake.notify_one();
        }
    }

    /// [`RemoteSender::queued`], readable from another thread as long as it is kept.
    pub fn gauge(&self) -> impl Fn() -> u32 + std::marker::Send + Sync + 'static {
        let state = self.state.clone();
        move || lock(&state.0).queue.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::loopback::Loopback;
    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    /// An inbox of queues, one per channel, read by test threads.
    #[derive(Default)]
    struct Queues {
        queues: Mutex<Vec<VecDeque<Delivery>>>,
        arrived: Condvar,
        broken: Mutex<Vec<(usize, String)>>,
    }

    impl Inbox for Queues {
        fn deliver(&self, channel: usize, delivery: Delivery) {
            let mut q = lock(&self.queues);
            q[channel].push_back(delivery);
            drop(q);
            self.arrived.notify_all();
        }

        fn broken(&self, channel: usize, why: String) {
            lock(&self.broken).push((channel, why));
        }
    }

    /// A router expecting channels `id(from)` for each `from` in `channels`, delivering them to
    /// channels `0..` of `inputs` and `inbox`.
    fn router(channels: &[u32], inputs: &Arc<RemoteInputs>, inbox: &Arc<Queues>) -> Arc<Router> {
        let router = Router::new(Duration::from_millis(300));
        for (channel, &from) in channels.iter().enumerate() {
            router.add(
                id(from),
                Route {
                    inputs: inputs.clone(),
                    inbox: inbox.clone(),
                    channel,
                    frame_limit: frame_limit(1024),
                },
            );
        }
        router
    }

    impl Queues {
        fn take(&self, channel: usize) -> Delivery {
            let since = Instant::now();
            let mut q = lock(&self.queues);
            loop {
                if let Some(d) = q[channel].pop_front() {
                    return d;
                }
                assert!(
                    since.elapsed() < Duration::from_secs(20),
                    "channel {channel} delivered nothing for 20 s"
                );
                q = self
                    .arrived
                    .wait_timeout(q, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
        }

        fn held(&self, channel: usize) -> usize {
            lock(&self.queues)[channel].len()
        }
    }

    fn id(from: u32) -> ChannelId {
        ChannelId {
            job: "j".into(),
            attempt: 0,
            edge: 0,
            from,
            to: 0,
        }
    }

    /// Two channels on one QUIC connection on loopback: while the task reading channel 1
    /// stalls, channel 0 runs to its end (no head-of-line blocking), channel 1's sender is held
    /// back by credit (it holds no more than its queue), and then everything arrives in
    /// order, once.
    #[test]
    fn a_stalled_channel_does_not_block_another_on_the_same_connection() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let inputs = RemoteInputs::new(2, 2, 2);
        let inbox = Arc::new(Queues {
            queues: Mutex::new(vec![VecDeque::new(), VecDeque::new()]),
            ..Queues::default()
        });
        let (a, b, link, serving) = runtime.block_on(async {
            let link = Loopback::connect().await.unwrap();
            let serving = tokio::spawn(serve_inputs(
                link.server.clone(),
                router(&[0, 1], &inputs, &inbox),
            ));
            let a = RemoteSender::open(&link.client, id(0), 4).await.unwrap();
            let b = RemoteSender::open(&link.client, id(1), 4).await.unwrap();
            (a, b, link, serving)
        });
        let n = 2000u32;
        let send_all = |s: RemoteSender| {
            std::thread::spawn(move || {
                for i in 0..n {
                    s.send(i.to_le_bytes().to_vec()).unwrap();
                    if i == n / 2 {
                        s.barrier(7).unwrap();
                    }
                }
                s.end().unwrap();
                s
            })
        };
        let (ta, tb) = (send_all(a), send_all(b));
        // Channel 0 read to its end while channel 1 is not read at all.
        let started = Instant::now();
        let read_all = |ch: usize| {
            let mut got = Vec::new();
            loop {
                match inbox.take(ch) {
                    Delivery::Data(b) => {
                        got.push(u32::from_le_bytes(b[..].try_into().unwrap()));
                        inputs.consumed(ch).unwrap();
                    }
                    Delivery::Barrier(id) => {
                        assert_eq!((id, got.len() as u32), (7, n / 2 + 1));
                    }
                    Delivery::Watermark(wm) => panic!("no watermark was sent: {wm}"),
                    Delivery::End => return got,
                }
            }
        };
        assert_eq!(read_all(0), (0..n).collect::<Vec<_>>());
        assert!(started.elapsed() < Duration::from_secs(20));
        // Channel 1 was held back by credit: the receiver holds at most its buffers.
        assert!(inbox.held(1) <= 4, "{} buffers held", inbox.held(1));
        assert!(!tb.is_finished(), "channel 1's sender waits for credit");
        assert_eq!(read_all(1), (0..n).collect::<Vec<_>>());
        let (a, b) = (ta.join().unwrap(), tb.join().unwrap());
        assert_eq!((a.queued(), b.queued()), (0, 0));
        drop((a, b));
        link.client.close(0u32.into(), b"done");
        runtime.block_on(async {
            let served = tokio::time::timeout(Duration::from_secs(5), serving).await;
            assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
        });
        link.close();
    }

    /// Bytes that break the protocol end the connection they came on with an error saying
    /// what was wrong (a stream that does not open with its channel, a buffer sent without
    /// credit, a frame of another version), and the channels open on it report the break to
    /// their gates; a stream for a channel nobody expects is refused alone.
    #[test]
    fn a_stream_breaking_the_protocol_ends_its_connection_with_the_reason() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let data = |backlog| {
            Frame::Data {
                backlog,
                records: Bytes::from_static(b"x"),
            }
            .to_bytes()
            .to_vec()
        };
        let open = |from| Frame::Open(id(from)).to_bytes().to_vec();
        let mut other_version = open(0);
        other_version[4] += 1;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (data(0), "did not open"),
            (
                [open(0), data(0), data(0), data(0)].concat(),
                "without credit",
            ),
            (other_version, "wire version"),
        ];
        for (bytes, why) in cases {
            let (error, broken) = runtime.block_on(async {
                let link = Loopback::connect().await.unwrap();
                let inputs = RemoteInputs::new(2, 2, 0);
                let inbox = Arc::new(Queues {
                    queues: Mutex::new(vec![VecDeque::new(), VecDeque::new()]),
                    ..Queues::default()
                });
                let serving = tokio::spawn(serve_inputs(
                    link.server.clone(),
                    router(&[0, 1], &inputs, &inbox),
                ));
                // A healthy channel on the same connection, open when the other breaks it.
                let healthy = RemoteSender::open(&link.client, id(1), 4).await.unwrap();
                let (mut send, _recv) = link.client.open_bi().await.unwrap();
                send.write_all(&bytes).await.unwrap();
                let served = tokio::time::timeout(Duration::from_secs(10), serving)
                    .await
                    .expect("the connection ends")
                    .unwrap();
                // The server closed the connection, with the reason.
                let closed = tokio::time::timeout(Duration::from_secs(10), link.client.closed())
                    .await
                    .expect("closed");
                link.close();
                drop(healthy);
                let broken = lock(&inbox.broken).clone();
                (
                    (served.unwrap_err().to_string(), closed.to_string()),
                    broken,
                )
            });
            assert!(error.0.contains(why), "{why}: {}", error.0);
            assert!(error.1.contains(why), "{why}: {}", error.1);
            // The healthy channel (index 1 of the gate) was told it broke.
            assert!(broken.iter().any(|(ch, _)| *ch == 1), "{why}: {broken:?}");
        }

        // A channel nobody expects: its stream is refused, the connection stays up and
        // another channel on it still delivers.
        let inbox = runtime.block_on(async {
            let link = Loopback::connect().await.unwrap();
            let inputs = RemoteInputs::new(1, 2, 0);
            let inbox = Arc::new(Queues {
                queues: Mutex::new(vec![VecDeque::new()]),
                ..Queues::default()
            });
            tokio::spawn(serve_inputs(
                link.server.clone(),
                router(&[0], &inputs, &inbox),
            ));
            let (mut send, mut recv) = link.client.open_bi().await.unwrap();
            send.write_all(&open(5)).await.unwrap();
            let refused = tokio::time::timeout(Duration::from_secs(10), recv.read(&mut [0; 8]))
                .await
                .expect("refused in time");
            assert!(refused.is_err(), "{refused:?}");
            let sender = RemoteSender::open(&link.client, id(0), 4).await.unwrap();
            tokio::task::spawn_blocking(move || {
                sender.send(b"x".to_vec()).unwrap();
                sender.end().unwrap();
                std::thread::sleep(Duration::from_millis(100));
            })
            .await
            .unwrap();
            link.close();
            inbox
        });
        assert_eq!(inbox.take(0), Delivery::Data(Bytes::from_static(b"x")));
        assert_eq!(inbox.take(0), Delivery::End);
        assert!(lock(&inbox.broken).is_empty());
    }
}
