//! The service's side: a pool of jailed workers that embeds texts.
//!
//! The pool keeps [`PoolConfig::workers`] workers running, each looked after by a *slot*
//! (a tokio task). A slot asks the [`Spawner`] for a worker (in the appliance, the root
//! supervisor starts one in its jail and hands back the service's end of its socket),
//! waits for its hello, then takes requests from the pool's one queue, one at a time.
//! Workers are started eagerly, so the first request does not pay for loading the model.
//!
//! # When a worker fails
//!
//! - A worker whose connection ends (a crash, the OOM killer), that sends something
//!   malformed (an answer to another request, the wrong number or width of vectors, a
//!   protocol error) or that does not answer within [`PoolConfig::request_timeout`] (it
//!   hangs) is stopped, counted as a restart and replaced. Its request is retried once,
//!   by whichever slot is free first; a request that fails twice gets
//!   [`PoolError::Failed`], naming both causes.
//! - A worker that answers `failed` with [`FailReason::BadRequest`] or
//!   [`FailReason::Inference`] is healthy: the caller gets [`PoolError::Rejected`], the
//!   worker stays and nothing is retried (the same texts would fail again).
//! - A worker that cannot start (the spawner fails, or the worker dies or stays silent
//!   before its hello) is tried again after a delay that doubles from
//!   [`PoolConfig::backoff_initial`] to [`PoolConfig::backoff_max`] and starts over at
//!   the next hello. While every slot is waiting so, requests fail at once with
//!   [`PoolError::Unavailable`] (the last error and the time to the next try) instead of
//!   queueing for minutes.
//!
//! # Recycling
//!
//! A worker is retired and replaced after [`PoolConfig::max_requests`] answers, at
//! [`PoolConfig::max_age`], or after [`PoolConfig::max_idle`] without a request, never in
//! the middle of a request. Retiring is graceful: the pool closes its end of the socket
//! (the worker's [`serve`](crate::serve) loop then returns and the process exits), then
//! calls [`Spawner::stop`] with [`PoolConfig::stop_grace`]. Recycled workers are counted
//! apart from restarts: nothing went wrong. A worker that has answered nothing is never
//! recycled: it holds no texts and has done no work, and replacing it would only load
//! the model again (an idle appliance would otherwise reload it every `max_idle`).
//!
//! # How long a caller waits
//!
//! [`Pool::embed`] answers within [`PoolConfig::answer_deadline`] of being called,
//! whatever happens (a timer in `embed` itself enforces it):
//! `2 × (request_timeout + stop_grace) + hello_timeout`, 124 s with the defaults. That
//! is how long a request that fails twice on a lone worker takes at worst: its first
//! attempt hangs for `request_timeout`, the worker is stopped within `stop_grace` (the
//! retry waits for the stop, which tells whether the OOM killer was involved), a
//! replacement says hello within `hello_timeout`, the second attempt hangs, that worker
//! is stopped; so such a request gets its [`PoolError::Failed`] (give or take the
//! milliseconds a kill takes beyond the grace). Time spent in the queue (behind other
//! requests, or waiting for a worker that is still loading) counts against the same
//! deadline; a request still unanswered at the deadline gets [`PoolError::TimedOut`]
//! (naming its first failure, if any) and leaves the queue. A worker busy with a request
//! whose caller has given up finishes it: the worker is judged by `request_timeout`
//! alone.
//!
//! # Shutdown
//!
//! [`Pool::shutdown`] (or dropping the last clone of the pool) answers queued requests
//! and those in flight with [`PoolError::ShutDown`] at once, and stops every worker
//! gracefully; it returns after about `stop_grace`.
//!
//! # Privacy
//!
//! Texts are people's notes, and vectors can be turned back into text: neither appears
//! in a log line, an error or `Debug` output. Events carry ids, counts and durations.
//! The message of a worker's `failed` answer goes to the caller (in
//! [`PoolError::Rejected`]) and nowhere else; the [`Model`](crate::Model) contract keeps
//! texts out of it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::net::UnixStream;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tracing::{Instrument as _, info, info_span, warn};

use crate::codec::{
    FailReason, MAX_FRAME_BYTES, MAX_TEXT_BYTES, MAX_TEXTS, Message, ProtocolError,
};
use crate::io::{read_message_async, write_message_async};

/// How much longer than its grace a [`Spawner::stop`] may take (the kill, reaping the
/// process, the supervisor's answer) before the slot stops waiting for it and reports
/// the stop as failed.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// Stands in for "never" in deadlines: far enough, and no overflow when added to now.
const FAR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Starts and stops workers (in the appliance: requests to the supervisor over its
/// control socket; in tests, threads).
pub trait Spawner: Send + Sync + 'static {
    /// What the spawner knows about a worker (the jail report), shown in the status.
    type Info: Clone + fmt::Debug + Send + Sync + 'static;

    /// Starts a worker; returns its id (the spawner's), the service's end of its socket
    /// and its info. The pool drops this future if it takes longer than
    /// [`PoolConfig::hello_timeout`] or the pool shuts down: a spawner must then not
    /// leave a worker behind.
    fn spawn(&self) -> impl Future<Output = Result<Spawned<Self::Info>, String>> + Send;

    /// Ends worker `id`: waits at most `grace` for it to exit (the pool has closed its
    /// socket by then), kills it if it still runs, and says how it ended.
    fn stop(&self, id: u64, grace: Duration) -> impl Future<Output = Result<Ended, String>> + Send;
}

/// A worker the spawner started.
#[derive(Debug)]
pub struct Spawned<I> {
    /// The spawner's id for it, passed back to [`Spawner::stop`].
    pub id: u64,
    /// The service's end of the worker's socket pair.
    pub stream: std::os::unix::net::UnixStream,
    pub info: I,
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// As people read it: "exit status 0", "killed by SIGKILL".
    pub status: String,
    /// The kernel's out-of-memory killer ended it (its cgroup says so).
    pub oom_killed: bool,
}

/// How the pool runs its workers. `Default` suits one CPU worker on a small box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Workers kept running, so requests embedded at once. Each holds a model in memory;
    /// 0 is taken as 1.
    pub workers: usize,
    /// How long a worker may take to answer one request before it counts as hung and is
    /// replaced. Generous: a full batch on a slow CPU takes seconds, a hang is forever.
    pub request_timeout: Duration,
    /// How long a new worker may take from the spawn request to its hello: the jail is
    /// built and the model loaded (from a cold disk, on first boot) in that time.
    pub hello_timeout: Duration,
    /// Answers after which a worker is replaced: a leak or a slowly corrupted state in a
    /// worker (or the runtime under it) cannot grow without end. 0 acts as 1.
    pub max_requests: u64,
    /// Age (from the spawn) after which a worker is replaced, for the same reason, and so
    /// that a busy worker is renewed too.
    pub max_age: Duration,
    /// Time without a request after which a worker is replaced, so that texts do not
    /// linger in a worker's memory after use.
    pub max_idle: Duration,
    /// The first delay before trying again after a worker could not start.
    pub backoff_initial: Duration,
    /// The longest such delay: a pool that cannot start workers (a missing model, say)
    /// tries once a minute and comes back on its own once the cause is fixed.
    pub backoff_max: Duration,
    /// How long a worker may take to exit once its socket is closed before it is killed.
    pub stop_grace: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 1,
            request_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(60),
            max_requests: 1000,
            max_age: Duration::from_secs(3600),
            max_idle: Duration::from_secs(5 * 60),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stop_grace: Duration::from_secs(2),
        }
    }
}

impl PoolConfig {
    /// The longest [`Pool::embed`] waits: `2 × (request_timeout + stop_grace) +
    /// hello_timeout` (see the module documentation for why).
    pub fn answer_deadline(&self) -> Duration {
        self.request_timeout
            .saturating_add(self.stop_grace)
            .saturating_mul(2)
            .saturating_add(self.hello_timeout)
    }
}

/// Why [`Pool::embed`] returned no vectors. Never contains a text or a vector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    #[error("too many texts in one request ({count}; the limit is {MAX_TEXTS})")]
    TooManyTexts { count: usize },
    #[error(
        "text {index} of the request is too long ({bytes} bytes; the limit is {MAX_TEXT_BYTES})"
    )]
    TextTooLong { index: usize, bytes: usize },
    #[error("the request is too large ({bytes} bytes; the limit is {MAX_FRAME_BYTES})")]
    RequestTooLarge { bytes: usize },
    /// A healthy worker could not embed these texts; retrying would fail again.
    #[error("the worker could not embed the texts ({}): {message}", reason.as_str())]
    Rejected {
        reason: FailReason,
        /// The worker's own words (from the jail: show them, do not act on them).
        message: String,
    },
    /// Two workers failed on this request, one after the other.
    #[error("the request failed twice: {first}; then {second}")]
    Failed { first: String, second: String },
    /// No worker can start at the moment.
    #[error("no AI worker can start ({last_error}); the next try is in {}", human(*next_try_in))]
    Unavailable {
        last_error: String,
        next_try_in: Duration,
    },
    /// No answer within [`PoolConfig::answer_deadline`].
    #[error("no answer within {}{}", human(*after), first_failure.as_ref().map(|f| format!(" (the first attempt failed: {f})")).unwrap_or_default())]
    TimedOut {
        after: Duration,
        first_failure: Option<String>,
    },
    #[error("the AI worker pool is shut down")]
    ShutDown,
}

/// What a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Asking for a worker, or waiting for its hello.
    Starting,
    /// Its worker waits for a request.
    Ready,
    /// Its worker is answering a request.
    Busy,
    /// Retiring or replacing its worker.
    Stopping,
    /// Its last worker could not start; it tries again at `next_try_at`.
    BackingOff,
    /// The pool shut down.
    Stopped,
}

impl SlotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Starting => "starting",
            SlotState::Ready => "ready",
            SlotState::Busy => "busy",
            SlotState::Stopping => "stopping",
            SlotState::BackingOff => "backing off",
            SlotState::Stopped => "stopped",
        }
    }
}

/// One slot in [`PoolStatus`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotStatus<I> {
    pub state: SlotState,
    /// While backing off: when the next start is tried.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_try_at: Option<OffsetDateTime>,
    /// The slot's worker, from its spawn until it is stopped.
    pub worker: Option<WorkerStatus<I>>,
}

/// A running worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus<I> {
    /// The spawner's id.
    pub id: u64,
    /// From the hello (`None` until then): the pid the worker sees itself as (1 in its
    /// own pid namespace).
    pub pid: Option<u32>,
    /// From the hello: the execution provider ("cpu", "cuda").
    pub provider: Option<String>,
    /// From the hello: why that is not the provider the worker prefers (a CUDA build
    /// that could not use the GPU); `None` when it is.
    pub provider_note: Option<String>,
    /// From the hello: the width of its vectors.
    pub dimensions: Option<u32>,
    /// Requests this worker answered.
    pub served: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// What the spawner reported.
    pub info: I,
}

/// The last thing that went wrong, for people.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastError {
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What [`Pool::status`] reports. Counts are since the pool started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus<I> {
    pub slots: Vec<SlotStatus<I>>,
    /// Requests waiting for a free worker.
    pub queued: usize,
    /// Requests answered (vectors, or a worker's refusal).
    pub served: u64,
    /// Workers replaced because they crashed, hung or broke the protocol.
    pub restarts: u64,
    /// Workers retired by age, use or idleness.
    pub recycled: u64,
    /// Workers that could not start.
    pub start_failures: u64,
    pub last_error: Option<LastError>,
}

/// The pool of workers. Cheap to clone; the workers stop when [`Pool::shutdown`] is
/// called or the last clone is dropped.
pub struct Pool<S: Spawner> {
    owner: Arc<Owner<S>>,
}

impl<S: Spawner> Clone for Pool<S> {
    fn clone(&self) -> Self {
        Pool {
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<S: Spawner> fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.owner.inner.config)
            .finish_non_exhaustive()
    }
}

/// Held by every clone of a [`Pool`]; the slots hold only `inner`, so dropping the last
/// clone stops them.
struct Owner<S: Spawner> {
    inner: Arc<Inner<S>>,
    slots: Mutex<Vec<JoinHandle<()>>>,
}

impl<S: Spawner> Drop for Owner<S> {
    fn drop(&mut self) {
        self.inner.begin_shutdown();
    }
}

impl<S: Spawner> Pool<S> {
    /// Starts the slots, each of which starts a worker at once. Must be called within a
    /// tokio runtime.
    pub fn start(spawner: S, config: PoolConfig) -> Pool<S> {
        let workers = config.workers.max(1);
        let slots = (0..workers)
            .map(|_| SlotRecord {
                status: SlotStatus {
                    state: SlotState::Starting,
                    next_try_at: None,
                    worker: None,
                },
                retry_at: None,
            })
            .collect();
        let inner = Arc::new(Inner {
            spawner,
            config,
            shared: Mutex::new(Shared {
                queue: VecDeque::new(),
                slots,
                served: 0,
                restarts: 0,
                recycled: 0,
                start_failures: 0,
                last_error: None,
                last_start_error: None,
                stopping: false,
            }),
            work: Notify::new(),
            stop: watch::Sender::new(false),
            next_request: AtomicU64::new(1),
        });
        let handles = (0..workers)
            .map(|slot| {
                tokio::spawn(
                    Arc::clone(&inner)
                        .run_slot(slot)
                        .instrument(info_span!("worker_slot", slot)),
                )
            })
            .collect();
        Pool {
            owner: Arc::new(Owner {
                inner,
                slots: Mutex::new(handles),
            }),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.owner.inner.config
    }

    /// One vector per text, in order. Checks the protocol's limits before anything else
    /// (an empty list is answered at once, without a worker), then queues the request
    /// for the first free worker. Answers within [`PoolConfig::answer_deadline`].
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, PoolError> {
        check_limits(&texts)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.owner.inner;
        let after = inner.config.answer_deadline();
        let deadline = later(Instant::now(), after);
        let (reply, answer) = oneshot::channel();
        let first_failure = Arc::new(Mutex::new(None));
        {
            let mut shared = inner.shared();
            if shared.stopping {
                return Err(PoolError::ShutDown);
            }
            if shared.all_backing_off() {
                return Err(shared.unavailable());
            }
            shared.queue.push_back(Job {
                texts,
                reply,
                deadline,
                first_failure: Arc::clone(&first_failure),
            });
        }
        inner.work.notify_one();
        match timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            // Dropped unanswered by a slot that saw the deadline pass first,
            Ok(Err(_)) if Instant::now() >= deadline => Err(PoolError::TimedOut {
                after,
                first_failure: lock(&first_failure).take(),
            }),
            // or by slots that ended.
            Ok(Err(_)) => Err(PoolError::ShutDown),
            Err(_) => Err(PoolError::TimedOut {
                after,
                first_failure: lock(&first_failure).take(),
            }),
        }
    }

    pub fn status(&self) -> PoolStatus<S::Info> {
        let shared = self.owner.inner.shared();
        PoolStatus {
            slots: shared.slots.iter().map(|s| s.status.clone()).collect(),
            queued: shared.queue.len(),
            served: shared.served,
            restarts: shared.restarts,
            recycled: shared.recycled,
            start_failures: shared.start_failures,
            last_error: shared.last_error.clone(),
        }
    }

    /// Fails queued requests and those in flight with [`PoolError::ShutDown`], stops
    /// every worker (gracefully: socket closed, then [`Spawner::stop`] with
    /// `stop_grace`) and waits for the slots to end. Later calls to
    /// [`embed`](Pool::embed) fail the same way.
    pub async fn shutdown(&self) {
        self.owner.inner.begin_shutdown();
        let handles = std::mem::take(&mut *lock(&self.owner.slots));
        for handle in handles {
            if let Err(e) = handle.await {
                warn!(error = %e, "a worker slot ended abnormally");
            }
        }
        info!("worker pool shut down");
    }
}

/// Checks what [`crate::encode`] would refuse, so that a request that cannot be sent
/// fails before it reaches a worker.
fn check_limits(texts: &[String]) -> Result<(), PoolError> {
    if texts.len() > MAX_TEXTS {
        return Err(PoolError::TooManyTexts { count: texts.len() });
    }
    if let Some((index, text)) = texts
        .iter()
        .enumerate()
        .find(|(_, t)| t.len() > MAX_TEXT_BYTES)
    {
        return Err(PoolError::TextTooLong {
            index,
            bytes: text.len(),
        });
    }
    // Version, kind, id and count, then each text with its length prefix.
    let bytes = 2 + 8 + 4 + texts.iter().map(|t| 4 + t.len()).sum::<usize>();
    if bytes > MAX_FRAME_BYTES {
        return Err(PoolError::RequestTooLarge { bytes });
    }
    Ok(())
}

/// A request waiting for, or held by, a slot. No `Debug`: it holds the texts.
struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, PoolError>>,
    deadline: Instant,
    /// Why its first attempt failed; shared with the caller, who names it if the
    /// deadline passes.
    first_failure: Arc<Mutex<Option<String>>>,
}

impl Job {
    /// Its caller stopped waiting (the deadline passed, or the caller's future was
    /// dropped): no worker should spend time on it.
    fn abandoned(&self) -> bool {
        self.reply.is_closed() || Instant::now() >= self.deadline
    }

    fn answer(self, result: Result<Vec<Vec<f32>>, PoolError>) {
        // A caller that stopped waiting does not need the answer.
        let _ = self.reply.send(result);
    }
}

struct SlotRecord<I> {
    status: SlotStatus<I>,
    /// While backing off: when the slot tries again.
    retry_at: Option<Instant>,
}

/// Everything the slots and callers share, under one lock (held briefly, never across
/// an await).
struct Shared<I> {
    queue: VecDeque<Job>,
    slots: Vec<SlotRecord<I>>,
    served: u64,
    restarts: u64,
    recycled: u64,
    start_failures: u64,
    last_error: Option<LastError>,
    last_start_error: Option<String>,
    stopping: bool,
}

impl<I> Shared<I> {
    /// No slot has a worker or is starting one: a request would only wait.
    fn all_backing_off(&self) -> bool {
        self.slots
            .iter()
            .all(|s| matches!(s.status.state, SlotState::BackingOff | SlotState::Stopped))
    }

    fn unavailable(&self) -> PoolError {
        let now = Instant::now();
        let next = self.slots.iter().filter_map(|s| s.retry_at).min();
        PoolError::Unavailable {
            last_error: self
                .last_start_error
                .clone()
                .unwrap_or_else(|| "no worker has started".into()),
            next_try_in: next.map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
        }
    }

    fn record_error(&mut self, message: &str) {
        self.last_error = Some(LastError {
            message: message.to_owned(),
            at: OffsetDateTime::now_utc(),
        });
    }
}

struct Inner<S: Spawner> {
    spawner: S,
    config: PoolConfig,
    shared: Mutex<Shared<S::Info>>,
    /// Woken when a request is queued.
    work: Notify,
    /// Set to `true` once, when the pool shuts down.
    stop: watch::Sender<bool>,
    next_request: AtomicU64,
}

/// The service's end of a worker that said hello.
struct Worker {
    id: u64,
    stream: UnixStream,
    dimensions: usize,
    started: Instant,
    last_used: Instant,
    served: u64,
}

/// Why a worker leaves its slot.
enum End {
    Recycle(&'static str),
    Failed { failure: Failure, job: Option<Job> },
    ShutDown,
}

/// Why a worker could not start.
enum StartError {
    Failed(String),
    ShutDown,
}

#[derive(Clone, Copy)]
enum Phase {
    Starting,
    Request,
    Idle,
}

impl Phase {
    fn during(self) -> &'static str {
        match self {
            Phase::Starting => "while starting",
            Phase::Request => "during a request",
            Phase::Idle => "while idle",
        }
    }
}

/// What went wrong with a worker, before its [`Ended`] is known.
enum Failure {
    /// Its connection ended.
    Exited(Phase),
    /// It did not answer (or say hello) in time.
    Silent(Phase, Duration),
    /// It sent something it should not have.
    Malformed(Phase, String),
    /// The socket failed otherwise.
    Io(Phase, String),
    /// It said, instead of hello, why it cannot start (its model did not load).
    CannotStart(String),
}

impl Failure {
    fn from_protocol(phase: Phase, e: ProtocolError) -> Failure {
        match e {
            ProtocolError::Closed => Failure::Exited(phase),
            ProtocolError::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                Failure::Exited(phase)
            }
            ProtocolError::Io(e) => Failure::Io(phase, e.to_string()),
            // Decoding errors name kinds and limits, never content.
            other => Failure::Malformed(phase, other.to_string()),
        }
    }

    /// The sentence for people, once the worker was stopped.
    fn describe(&self, id: u64, ended: &Result<Ended, String>) -> String {
        let mut message = match (self, ended) {
            (Failure::Exited(phase), Ok(ended)) if ended.oom_killed => format!(
                "worker {id} was killed by the out-of-memory killer {}",
                phase.during()
            ),
            (_, Ok(ended)) if ended.oom_killed => {
                format!("worker {id} was killed by the out-of-memory killer")
            }
            (Failure::Exited(phase), Ok(ended)) => {
                format!("worker {id} exited {} ({})", phase.during(), ended.status)
            }
            (Failure::Exited(phase), Err(_)) => format!("worker {id} exited {}", phase.during()),
            (Failure::Silent(Phase::Starting, after), _) => format!(
                "worker {id} did not say hello within {} and was stopped",
                human(*after)
            ),
            (Failure::Silent(_, after), _) => format!(
                "worker {id} did not answer within {} and was stopped",
                human(*after)
            ),
            (Failure::Malformed(phase, detail), _) => format!(
                "worker {id} broke the protocol {} ({detail}) and was stopped",
                phase.during()
            ),
            (Failure::Io(phase, detail), _) => format!(
                "the socket of worker {id} failed {} ({detail}) and the worker was stopped",
                phase.during()
            ),
            (Failure::CannotStart(why), _) => format!("worker {id} could not start: {why}"),
        };
        if let Err(e) = ended {
            message.push_str(&format!("; stopping it failed: {e}"));
        }
        message
    }
}

/// Exponential backoff between failed starts.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.min(max);
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl<S: Spawner> Inner<S> {
    fn shared(&self) -> MutexGuard<'_, Shared<S::Info>> {
        lock(&self.shared)
    }

    fn update(&self, slot: usize, change: impl FnOnce(&mut SlotRecord<S::Info>)) {
        if let Some(record) = self.shared().slots.get_mut(slot) {
            change(record);
        }
    }

    fn set_state(&self, slot: usize, state: SlotState) {
        self.update(slot, |r| r.status.state = state);
    }

    fn begin_shutdown(&self) {
        let jobs: Vec<Job> = {
            let mut shared = self.shared();
            shared.stopping = true;
            shared.queue.drain(..).collect()
        };
        for job in jobs {
            job.answer(Err(PoolError::ShutDown));
        }
        self.stop.send_replace(true);
    }

    /// One slot: keeps a worker running until the pool shuts down.
    async fn run_slot(self: Arc<Self>, slot: usize) {
        let mut stop = self.stop.subscribe();
        let mut backoff = Backoff::new(self.config.backoff_initial, self.config.backoff_max);
        while !*stop.borrow() {
            self.update(slot, |r| {
                r.status.state = SlotState::Starting;
                r.status.next_try_at = None;
                r.status.worker = None;
                r.retry_at = None;
            });
            match self.start_worker(slot, &mut stop).await {
                Ok(mut worker) => {
                    backoff.reset();
                    let end = self.serve(slot, &mut worker, &mut stop).await;
                    self.finish(slot, worker, end).await;
                }
                Err(StartError::ShutDown) => break,
                Err(StartError::Failed(message)) => {
                    let delay = backoff.next_delay();
                    self.start_failed(slot, &message, delay);
                    tokio::select! {
                        () = sleep(delay) => {}
                        () = stopped(&mut stop) => break,
                    }
                }
            }
        }
        self.update(slot, |r| {
            r.status.state = SlotState::Stopped;
            r.status.next_try_at = None;
            r.status.worker = None;
            r.retry_at = None;
        });
    }

    /// Spawns a worker and waits for its hello, both within `hello_timeout`.
    async fn start_worker(
        &self,
        slot: usize,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Worker, StartError> {
        let hello_timeout = self.config.hello_timeout;
        let deadline = later(Instant::now(), hello_timeout);
        let spawned = tokio::select! {
            spawned = timeout_at(deadline, self.spawner.spawn()) => spawned,
            () = stopped(stop) => return Err(StartError::ShutDown),
        };
        let Spawned { id, stream, info } = match spawned {
            Ok(Ok(spawned)) => spawned,
            Ok(Err(e)) => return Err(StartError::Failed(format!("starting a worker failed: {e}"))),
            Err(_) => {
                return Err(StartError::Failed(format!(
                    "starting a worker took longer than {}",
                    human(hello_timeout)
                )));
            }
        };
        let started = Instant::now();
        self.update(slot, |r| {
            r.status.worker = Some(WorkerStatus {
                id,
                pid: None,
                provider: None,
                provider_note: None,
                dimensions: None,
                served: 0,
                started_at: OffsetDateTime::now_utc(),
                info,
            });
        });
        let hello = tokio::select! {
            hello = hello(stream, deadline, hello_timeout) => hello,
            () = stopped(stop) => {
                // The stream was dropped with the hello future: the worker sees it closed.
                let _ = self.stop_worker(id).await;
                return Err(StartError::ShutDown);
            }
        };
        let Hello {
            stream,
            provider,
            note,
            dimensions,
            pid,
        } = match hello {
            Ok(hello) => hello,
            Err(failure) => {
                let ended = self.stop_worker(id).await;
                return Err(StartError::Failed(failure.describe(id, &ended)));
            }
        };
        if note.is_empty() {
            info!(worker = id, pid, provider = %provider, dimensions, "worker ready");
        } else {
            warn!(worker = id, pid, provider = %provider, %note, dimensions, "worker ready");
        }
        self.update(slot, |r| {
            r.status.state = SlotState::Ready;
            if let Some(w) = r.status.worker.as_mut() {
                w.pid = Some(pid);
                w.provider = Some(provider);
                w.provider_note = (!note.is_empty()).then_some(note);
                w.dimensions = Some(dimensions);
            }
        });
        Ok(Worker {
            id,
            stream,
            dimensions: usize::try_from(dimensions).unwrap_or(usize::MAX),
            started,
            last_used: Instant::now(),
            served: 0,
        })
    }

    fn start_failed(&self, slot: usize, message: &str, delay: Duration) {
        warn!(error = %message, retry_in_ms = delay.as_millis(), "a worker could not start");
        let jobs: Vec<Job> = {
            let mut shared = self.shared();
            shared.start_failures += 1;
            shared.record_error(message);
            shared.last_start_error = Some(message.to_owned());
            if let Some(record) = shared.slots.get_mut(slot) {
                record.status.state = SlotState::BackingOff;
                record.status.next_try_at = Some(OffsetDateTime::now_utc() + delay.min(FAR));
                record.status.worker = None;
                record.retry_at = Some(later(Instant::now(), delay));
            }
            if shared.all_backing_off() {
                shared.queue.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        if !jobs.is_empty() {
            let error = self.shared().unavailable();
            warn!(
                requests = jobs.len(),
                "no worker can start: queued requests failed"
            );
            for job in jobs {
                job.answer(Err(error.clone()));
            }
        }
    }

    /// Takes requests until the worker is due for recycling, fails, or the pool stops.
    async fn serve(
        &self,
        slot: usize,
        worker: &mut Worker,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        loop {
            // Counts against the task's budget: should a branch below ever be ready at
            // every poll, the loop still lets other tasks run.
            tokio::task::consume_budget().await;
            if let Some(reason) = self.recycle_due(worker) {
                return End::Recycle(reason);
            }
            let Some(mut job) = self.next_job() else {
                // When the worker becomes due for recycling (checked at the top of the
                // loop); never while it has answered nothing.
                let due = if worker.served == 0 {
                    later(Instant::now(), FAR)
                } else {
                    later(worker.last_used, self.config.max_idle)
                        .min(later(worker.started, self.config.max_age))
                };
                tokio::select! {
                    () = self.work.notified() => {}
                    () = sleep_until(due) => {}
                    readable = worker.stream.readable() => {
                        if let Some(failure) = unsolicited(&worker.stream, readable) {
                            return End::Failed { failure, job: None };
                        }
                    }
                    () = stopped(stop) => return End::ShutDown,
                }
                continue;
            };
            self.set_state(slot, SlotState::Busy);
            let outcome = tokio::select! {
                outcome = self.attempt(worker, &mut job) => Some(outcome),
                () = stopped(stop) => None,
            };
            match outcome {
                None => {
                    job.answer(Err(PoolError::ShutDown));
                    return End::ShutDown;
                }
                Some(Err(failure)) => {
                    return End::Failed {
                        failure,
                        job: Some(job),
                    };
                }
                Some(Ok(answer)) => {
                    worker.served += 1;
                    worker.last_used = Instant::now();
                    {
                        let mut shared = self.shared();
                        shared.served += 1;
                        if let Some(record) = shared.slots.get_mut(slot) {
                            record.status.state = SlotState::Ready;
                            if let Some(w) = record.status.worker.as_mut() {
                                w.served = worker.served;
                            }
                        }
                    }
                    job.answer(answer);
                }
            }
        }
    }

    fn recycle_due(&self, worker: &Worker) -> Option<&'static str> {
        let now = Instant::now();
        if worker.served == 0 {
            None
        } else if worker.served >= self.config.max_requests {
            Some("requests")
        } else if now >= later(worker.started, self.config.max_age) {
            Some("age")
        } else if now >= later(worker.last_used, self.config.max_idle) {
            Some("idle")
        } else {
            None
        }
    }

    /// The oldest request whose caller still waits.
    fn next_job(&self) -> Option<Job> {
        let mut shared = self.shared();
        while let Some(job) = shared.queue.pop_front() {
            if job.abandoned() {
                continue;
            }
            // One wake-up may stand for several queued requests: pass it on.
            if !shared.queue.is_empty() {
                self.work.notify_one();
            }
            return Some(job);
        }
        None
    }

    /// Sends the request and reads the answer, within `request_timeout`. `Ok` holds what
    /// the caller gets (vectors, or the worker's refusal); `Err` means the worker is
    /// broken.
    async fn attempt(
        &self,
        worker: &mut Worker,
        job: &mut Job,
    ) -> Result<Result<Vec<Vec<f32>>, PoolError>, Failure> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let count = job.texts.len();
        let request = Message::Embed {
            id,
            texts: std::mem::take(&mut job.texts),
        };
        let limit = self.config.request_timeout;
        let result = timeout(
            limit,
            exchange(&mut worker.stream, &request, id, count, worker.dimensions),
        )
        .await;
        // Kept for a retry.
        if let Message::Embed { texts, .. } = request {
            job.texts = texts;
        }
        result.unwrap_or(Err(Failure::Silent(Phase::Request, limit)))
    }

    /// Stops a worker that leaves its slot, then counts and reports it; a failed
    /// request is retried or answered.
    async fn finish(&self, slot: usize, worker: Worker, end: End) {
        self.set_state(slot, SlotState::Stopping);
        let Worker {
            id, stream, served, ..
        } = worker;
        // A worker whose socket closes leaves its serve loop and exits.
        drop(stream);
        let ended = self.stop_worker(id).await;
        match end {
            End::Recycle(reason) => {
                self.shared().recycled += 1;
                match &ended {
                    Ok(ended) if ended.status == "exit status 0" => {
                        info!(worker = id, reason, served, "worker recycled");
                    }
                    Ok(ended) => {
                        warn!(worker = id, reason, served, status = %ended.status, "worker recycled; it did not exit cleanly");
                    }
                    Err(e) => {
                        warn!(worker = id, reason, served, error = %e, "worker recycled; stopping it failed")
                    }
                }
            }
            End::Failed { failure, job } => {
                let message = failure.describe(id, &ended);
                warn!(worker = id, served, error = %message, retried = job.is_some(), "worker replaced");
                {
                    let mut shared = self.shared();
                    shared.restarts += 1;
                    shared.record_error(&message);
                }
                if let Some(job) = job {
                    self.retry_or_fail(job, message);
                }
            }
            End::ShutDown => {
                if let Err(e) = &ended {
                    warn!(worker = id, error = %e, "stopping a worker at shutdown failed");
                }
            }
        }
    }

    /// A request whose worker failed: queued again, first, if this was its first
    /// attempt; answered with both causes if it was its second.
    fn retry_or_fail(&self, job: Job, why: String) {
        if job.abandoned() {
            return;
        }
        let first = lock(&job.first_failure).clone();
        if let Some(first) = first {
            job.answer(Err(PoolError::Failed { first, second: why }));
            return;
        }
        *lock(&job.first_failure) = Some(why);
        {
            let mut shared = self.shared();
            if shared.stopping {
                drop(shared);
                job.answer(Err(PoolError::ShutDown));
                return;
            }
            shared.queue.push_front(job);
        }
        self.work.notify_one();
    }

    async fn stop_worker(&self, id: u64) -> Result<Ended, String> {
        let grace = self.config.stop_grace;
        let wait = grace.saturating_add(STOP_SLACK);
        match timeout(wait, self.spawner.stop(id, grace)).await {
            Ok(ended) => ended,
            Err(_) => Err(format!("no confirmation within {}", human(wait))),
        }
    }
}

/// What a worker's hello said, and the stream it came on.
struct Hello {
    stream: UnixStream,
    provider: String,
    note: String,
    dimensions: u32,
    pid: u32,
}

/// Reads the worker's hello.
async fn hello(
    stream: std::os::unix::net::UnixStream,
    deadline: Instant,
    hello_timeout: Duration,
) -> Result<Hello, Failure> {
    let io = |e: std::io::Error| Failure::Io(Phase::Starting, e.to_string());
    stream.set_nonblocking(true).map_err(io)?;
    let mut stream = UnixStream::from_std(stream).map_err(io)?;
    match timeout_at(deadline, read_message_async(&mut stream)).await {
        Err(_) => Err(Failure::Silent(Phase::Starting, hello_timeout)),
        Ok(Err(e)) => Err(Failure::from_protocol(Phase::Starting, e)),
        Ok(Ok(Message::Hello {
            provider,
            note,
            dimensions,
            pid,
        })) if dimensions > 0 => Ok(Hello {
            stream,
            provider,
            note,
            dimensions,
            pid,
        }),
        // A worker that cannot load its model says why before it exits (the message names
        // files, never a text).
        Ok(Ok(Message::Failed { message, .. })) => Err(Failure::CannotStart(message)),
        Ok(Ok(_)) => Err(Failure::Malformed(
            Phase::Starting,
            "its first message was not a hello with a vector width".into(),
        )),
    }
}

/// One request and its answer.
async fn exchange(
    stream: &mut UnixStream,
    request: &Message,
    id: u64,
    count: usize,
    dimensions: usize,
) -> Result<Result<Vec<Vec<f32>>, PoolError>, Failure> {
    match write_message_async(stream, request).await {
        Ok(()) => {}
        // Refused by the encoder before anything was written: the connection is intact.
        // (`check_limits` makes this unreachable; kept so that a gap between the two
        // fails the request, not the worker.)
        Err(e @ (ProtocolError::Limit { .. } | ProtocolError::TooLarge(_))) => {
            return Ok(Err(PoolError::Rejected {
                reason: FailReason::BadRequest,
                message: e.to_string(),
            }));
        }
        Err(e) => return Err(Failure::from_protocol(Phase::Request, e)),
    }
    let answer = read_message_async(stream)
        .await
        .map_err(|e| Failure::from_protocol(Phase::Request, e))?;
    check_answer(answer, id, count, dimensions)
}

/// The answer to request `id` of `count` texts, from a worker of `dimensions`.
fn check_answer(
    answer: Message,
    id: u64,
    count: usize,
    dimensions: usize,
) -> Result<Result<Vec<Vec<f32>>, PoolError>, Failure> {
    let malformed = |detail: String| Failure::Malformed(Phase::Request, detail);
    match answer {
        Message::Embedded { id: got, vectors } if got == id => {
            if vectors.len() != count {
                return Err(malformed(format!(
                    "{} vectors for {count} texts",
                    vectors.len()
                )));
            }
            if let Some(v) = vectors.iter().find(|v| v.len() != dimensions) {
                return Err(malformed(format!(
                    "vectors {} wide instead of {dimensions}",
                    v.len()
                )));
            }
            if vectors.iter().flatten().any(|x| !x.is_finite()) {
                return Err(malformed(
                    "a vector holds a value that is not finite".into(),
                ));
            }
            Ok(Ok(vectors))
        }
        Message::Failed {
            id: got,
            reason: reason @ (FailReason::BadRequest | FailReason::Inference),
            message,
        } if got == id => Ok(Err(PoolError::Rejected { reason, message })),
        // Its message is the worker's: not repeated here.
        Message::Failed {
            reason: FailReason::Protocol,
            ..
        } => Err(malformed("it reported a protocol error".into())),
        Message::Embedded { id: got, .. } | Message::Failed { id: got, .. } => Err(malformed(
            format!("an answer to request {got} instead of {id}"),
        )),
        Message::Hello { .. }
        | Message::Healthy { .. }
        | Message::Embed { .. }
        | Message::Health { .. } => Err(malformed("a message that is not an answer".into())),
    }
}

/// A worker with no request in hand has nothing to say: readable means it closed its
/// end (exited) or broke the protocol. `None` when the wake-up was spurious.
fn unsolicited(stream: &UnixStream, readable: std::io::Result<()>) -> Option<Failure> {
    if let Err(e) = readable {
        return Some(Failure::Io(Phase::Idle, e.to_string()));
    }
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => Some(Failure::Exited(Phase::Idle)),
        Ok(_) => Some(Failure::Malformed(
            Phase::Idle,
            "it sent a message without a request".into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => Some(Failure::from_protocol(Phase::Idle, ProtocolError::Io(e))),
    }
}

/// Resolves once the pool shuts down.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which happens only with the pool.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks can be left half-changed by a panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `at + after`, with "forever" capped so that it cannot overflow.
fn later(at: Instant, after: Duration) -> Instant {
    at + after.min(FAR)
}

/// "30 s", "1.5 s", "200 ms".
fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        if d.subsec_millis() == 0 {
            format!("{} s", d.as_secs())
        } else {
            format!("{:.1} s", d.as_secs_f64())
        }
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests;
