//! The pool against real worker loops: each worker is a thread running [`serve`] (or, to
//! answer wrongly, speaking the protocol by hand) over a real socket pair, with a model
//! whose behaviour each test scripts.
//!
//! Durations are real and short. Waits on threads are generous (a loaded two-core
//! machine may be slow); the bounds the pool promises are asserted as upper bounds.

use std::collections::{HashMap, VecDeque};
use std::net::Shutdown;
use std::os::unix::net::UnixStream as StdStream;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Instant as StdInstant;

use super::*;
use crate::io::{read_message, write_message};
use crate::serve::{Model, serve};

/// What a worker does with one request.
#[derive(Clone, Copy, Debug)]
enum Act {
    Answer,
    /// Answers after this long (unless stopped first).
    Slow(Duration),
    /// Never answers; only a stop ends it.
    Hang,
    /// Closes its socket in the middle of the request and exits with status 1.
    Crash,
    /// The same, and the stop reports the OOM killer.
    CrashOom,
    /// The model fails: `failed` with `Inference`.
    Refuse,
    /// Vectors narrower than the hello said.
    WrongWidth,
    /// One vector too many (rogue workers only: `serve` would not send it).
    WrongCount,
    /// An answer to another request (rogue workers only).
    WrongId,
}

/// How one worker behaves, from its start.
#[derive(Clone, Debug, Default)]
struct Script {
    /// One per request, in order; then `Answer`.
    acts: Vec<Act>,
    /// Model load time before the hello.
    load: Duration,
    never_hello: bool,
    /// Speaks the protocol by hand instead of through `serve`.
    rogue: bool,
    /// Rogue: exits right after its hello.
    exit_after_hello: bool,
    /// Rogue: says why it cannot start instead of hello, and exits.
    cannot_start: bool,
}

impl Script {
    fn acts(acts: &[Act]) -> Script {
        Script {
            acts: acts.to_vec(),
            rogue: acts
                .iter()
                .any(|a| matches!(a, Act::WrongCount | Act::WrongId)),
            ..Script::default()
        }
    }
}

/// A worker thread that has not been stopped yet.
struct Running {
    thread: ThreadHandle<bool>,
    kill: mpsc::Sender<()>,
    stream: StdStream,
    oom: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StopRecord {
    id: u64,
    /// It had not exited within the grace.
    killed: bool,
}

#[derive(Default)]
struct Books {
    /// One per spawned worker, in order; then the default script.
    scripts: Mutex<VecDeque<Script>>,
    /// Spawns still to refuse.
    failures: AtomicUsize,
    ids: AtomicU64,
    running: Mutex<HashMap<u64, Running>>,
    /// Worker threads still running.
    live: Arc<AtomicUsize>,
    attempts: Mutex<Vec<StdInstant>>,
    stops: Mutex<Vec<StopRecord>>,
}

/// Starts workers as threads; `stop` waits for the grace, then "kills" (wakes a hung
/// model and shuts the socket down).
#[derive(Clone, Default)]
struct TestSpawner(Arc<Books>);

impl TestSpawner {
    fn new(scripts: Vec<Script>) -> TestSpawner {
        let spawner = TestSpawner::default();
        *spawner.0.scripts.lock().unwrap() = scripts.into();
        spawner
    }

    fn failing(times: usize) -> TestSpawner {
        let spawner = TestSpawner::default();
        spawner.0.failures.store(times, Ordering::SeqCst);
        spawner
    }

    fn live(&self) -> usize {
        self.0.live.load(Ordering::SeqCst)
    }

    fn attempts(&self) -> Vec<StdInstant> {
        self.0.attempts.lock().unwrap().clone()
    }

    fn stops(&self) -> Vec<StopRecord> {
        self.0.stops.lock().unwrap().clone()
    }
}

/// Held by a worker thread: when the thread ends, its process "exits": the socket
/// closes (the spawner's copy of it would keep it open otherwise) and it is no longer
/// counted as live.
struct Exit {
    live: Arc<AtomicUsize>,
    stream: StdStream,
}

impl Drop for Exit {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Spawner for TestSpawner {
    type Info = String;

    async fn spawn(&self) -> Result<Spawned<String>, String> {
        let books = &self.0;
        books.attempts.lock().unwrap().push(StdInstant::now());
        if books
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("the supervisor refused (scripted)".into());
        }
        let id = books.ids.fetch_add(1, Ordering::SeqCst) + 1;
        let script = books
            .scripts
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_default();
        let (service, worker) = StdStream::pair().map_err(|e| e.to_string())?;
        let stream = worker.try_clone().map_err(|e| e.to_string())?;
        let (kill, killed) = mpsc::channel();
        let oom = Arc::new(AtomicBool::new(false));
        books.live.fetch_add(1, Ordering::SeqCst);
        let exit = Exit {
            live: Arc::clone(&books.live),
            stream: worker.try_clone().map_err(|e| e.to_string())?,
        };
        let thread = {
            let oom = Arc::clone(&oom);
            std::thread::spawn(move || {
                let _exit = exit;
                run_worker(id, worker, script, killed, oom)
            })
        };
        books.running.lock().unwrap().insert(
            id,
            Running {
                thread,
                kill,
                stream,
                oom,
            },
        );
        Ok(Spawned {
            id,
            stream: service,
            info: format!("jail of worker {id}"),
        })
    }

    async fn stop(&self, id: u64, grace: Duration) -> Result<Ended, String> {
        let running = self
            .0
            .running
            .lock()
            .unwrap()
            .remove(&id)
            .ok_or_else(|| format!("no worker {id}"))?;
        let until = StdInstant::now() + grace;
        while !running.thread.is_finished() && StdInstant::now() < until {
            sleep(Duration::from_millis(5)).await;
        }
        let killed = !running.thread.is_finished();
        if killed {
            let _ = running.kill.send(());
            let _ = running.stream.shutdown(Shutdown::Both);
        }
        let give_up = StdInstant::now() + Duration::from_secs(10);
        while !running.thread.is_finished() {
            if StdInstant::now() > give_up {
                return Err(format!("worker {id}'s thread did not end"));
            }
            sleep(Duration::from_millis(5)).await;
        }
        let clean = running
            .thread
            .join()
            .map_err(|_| "the worker thread panicked".to_string())?;
        self.0.stops.lock().unwrap().push(StopRecord { id, killed });
        let oom_killed = running.oom.load(Ordering::SeqCst);
        let status = if killed || oom_killed {
            "killed by SIGKILL"
        } else if clean {
            "exit status 0"
        } else {
            "exit status 1"
        };
        Ok(Ended {
            status: status.into(),
            oom_killed,
        })
    }
}

/// The worker process: `true` for a clean exit.
fn run_worker(
    id: u64,
    mut stream: StdStream,
    script: Script,
    killed: mpsc::Receiver<()>,
    oom: Arc<AtomicBool>,
) -> bool {
    if script.never_hello {
        let _ = killed.recv();
        return false;
    }
    if !script.load.is_zero()
        && !matches!(
            killed.recv_timeout(script.load),
            Err(RecvTimeoutError::Timeout)
        )
    {
        return false;
    }
    let pid = 1000 + id as u32;
    if script.rogue || script.exit_after_hello {
        return rogue(id, stream, pid, script);
    }
    let mut model = TestModel {
        id,
        acts: script.acts.into(),
        stream: stream.try_clone().unwrap(),
        killed,
        oom,
    };
    serve(&mut stream, &mut model, pid).is_ok()
}

/// A text's vector: its length, its place in the request, the worker that embedded it.
fn vectors(worker: u64, texts: &[&str]) -> Vec<Vec<f32>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| vec![t.len() as f32, i as f32, worker as f32])
        .collect()
}

struct TestModel {
    id: u64,
    acts: VecDeque<Act>,
    stream: StdStream,
    killed: mpsc::Receiver<()>,
    oom: Arc<AtomicBool>,
}

impl TestModel {
    /// The process dies: its socket closes (`serve` then fails to answer and returns).
    fn crash(&self) -> Result<Vec<Vec<f32>>, String> {
        let _ = self.stream.shutdown(Shutdown::Both);
        Err("crashed".into())
    }
}

impl Model for TestModel {
    fn provider(&self) -> &str {
        "test"
    }

    fn dimensions(&self) -> usize {
        3
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        match self.acts.pop_front().unwrap_or(Act::Answer) {
            Act::Answer | Act::WrongCount | Act::WrongId => Ok(vectors(self.id, texts)),
            Act::Slow(time) => match self.killed.recv_timeout(time) {
                Err(RecvTimeoutError::Timeout) => Ok(vectors(self.id, texts)),
                _ => self.crash(),
            },
            Act::Hang => {
                let _ = self.killed.recv();
                self.crash()
            }
            Act::Crash => self.crash(),
            Act::CrashOom => {
                self.oom.store(true, Ordering::SeqCst);
                self.crash()
            }
            Act::Refuse => Err("the model refused (scripted)".into()),
            Act::WrongWidth => Ok(texts.iter().map(|_| vec![0.0; 2]).collect()),
        }
    }
}

/// A worker that answers wrongly on purpose, which `serve` would not.
fn rogue(worker: u64, mut stream: StdStream, pid: u32, script: Script) -> bool {
    if script.cannot_start {
        let failed = Message::Failed {
            id: 0,
            reason: FailReason::Inference,
            message: "the model file is missing".into(),
        };
        let _ = write_message(&mut stream, &failed);
        return false;
    }
    let hello = Message::Hello {
        provider: "test".into(),
        note: String::new(),
        dimensions: 3,
        pid,
    };
    if write_message(&mut stream, &hello).is_err() {
        return false;
    }
    if script.exit_after_hello {
        return true;
    }
    let mut acts: VecDeque<Act> = script.acts.into();
    loop {
        let Ok(Message::Embed { id, texts }) = read_message(&mut stream) else {
            return true;
        };
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut vectors = vectors(worker, &texts);
        let answer = match acts.pop_front().unwrap_or(Act::Answer) {
            Act::WrongCount => {
                vectors.push(vec![0.0; 3]);
                Message::Embedded { id, vectors }
            }
            Act::WrongId => Message::Embedded {
                id: id + 1,
                vectors,
            },
            _ => Message::Embedded { id, vectors },
        };
        if write_message(&mut stream, &answer).is_err() {
            return false;
        }
    }
}

/// Short timings; tests that need others change them.
fn config() -> PoolConfig {
    PoolConfig {
        workers: 1,
        request_timeout: Duration::from_secs(5),
        hello_timeout: Duration::from_secs(5),
        max_requests: 1000,
        max_age: Duration::from_secs(3600),
        max_idle: Duration::from_secs(3600),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        // Long enough for a worker thread to notice its closed socket and end on a busy
        // machine: a test that expects a clean exit must not see a kill.
        stop_grace: Duration::from_secs(1),
    }
}

fn texts(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// The worker that embedded a result (see [`vectors`]).
fn worker_of(vectors: &[Vec<f32>]) -> u64 {
    vectors[0][2] as u64
}

/// Polls the status until `check` holds; fails the test after 10 s.
async fn until(
    pool: &Pool<TestSpawner>,
    what: &str,
    check: impl Fn(&PoolStatus<String>) -> bool,
) -> PoolStatus<String> {
    let give_up = StdInstant::now() + Duration::from_secs(10);
    loop {
        let status = pool.status();
        if check(&status) {
            return status;
        }
        assert!(
            StdInstant::now() < give_up,
            "gave up waiting for {what}: {status:#?}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

fn ready(status: &PoolStatus<String>) -> bool {
    status.slots.iter().all(|s| s.state == SlotState::Ready)
}

async fn until_live(spawner: &TestSpawner, threads: usize) {
    let give_up = StdInstant::now() + Duration::from_secs(10);
    while spawner.live() != threads {
        assert!(
            StdInstant::now() < give_up,
            "{} worker threads run, not {threads}",
            spawner.live()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_worker_starts_before_the_first_request_and_answers_in_order() {
    let spawner = TestSpawner::default();
    let pool = Pool::start(spawner.clone(), config());
    let status = until(&pool, "the worker's hello", ready).await;
    let worker = status.slots[0].worker.clone().unwrap();
    assert_eq!(worker.id, 1);
    assert_eq!(worker.pid, Some(1001));
    assert_eq!(worker.provider.as_deref(), Some("test"));
    assert_eq!(worker.dimensions, Some(3));
    assert_eq!(worker.info, "jail of worker 1");

    let answer = pool.embed(texts(&["a", "bbb", "cc"])).await.unwrap();
    assert_eq!(
        answer,
        vec![
            vec![1.0, 0.0, 1.0],
            vec![3.0, 1.0, 1.0],
            vec![2.0, 2.0, 1.0]
        ]
    );
    let answer = pool.embed(texts(&["dddd"])).await.unwrap();
    assert_eq!(answer, vec![vec![4.0, 0.0, 1.0]]);
    assert_eq!(
        pool.embed(Vec::new()).await.unwrap(),
        Vec::<Vec<f32>>::new()
    );

    let status = pool.status();
    assert_eq!(status.served, 2);
    assert_eq!(status.slots[0].worker.as_ref().unwrap().served, 2);
    assert_eq!((status.restarts, status.recycled), (0, 0));
    assert_eq!(spawner.attempts().len(), 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_crashes_mid_request_is_replaced_and_the_request_retried() {
    let spawner = TestSpawner::new(vec![Script::acts(&[Act::Crash])]);
    let pool = Pool::start(spawner.clone(), config());
    let answer = pool.embed(texts(&["note"])).await.unwrap();
    assert_eq!(answer, vec![vec![4.0, 0.0, 2.0]], "answered by worker 2");
    let status = pool.status();
    assert_eq!(status.restarts, 1);
    assert_eq!(
        status.last_error.unwrap().message,
        "worker 1 exited during a request (exit status 1)"
    );
    assert_eq!(spawner.stops()[0].id, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn an_out_of_memory_kill_is_named() {
    let spawner = TestSpawner::new(vec![Script::acts(&[Act::CrashOom])]);
    let pool = Pool::start(spawner, config());
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 2);
    assert_eq!(
        pool.status().last_error.unwrap().message,
        "worker 1 was killed by the out-of-memory killer during a request"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn a_hung_worker_is_stopped_and_another_answers_within_the_deadline() {
    let config = PoolConfig {
        request_timeout: Duration::from_secs(1),
        ..config()
    };
    let deadline = config.answer_deadline();
    let spawner = TestSpawner::new(vec![Script::acts(&[Act::Hang])]);
    let pool = Pool::start(spawner.clone(), config);
    until(&pool, "the worker's hello", ready).await;

    let asked = StdInstant::now();
    let answer = pool.embed(texts(&["x"])).await.unwrap();
    let took = asked.elapsed();
    assert_eq!(worker_of(&answer), 2);
    // The hang lasted the request timeout, then the stop its grace (the worker had to be
    // killed).
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < deadline, "{took:?} (the deadline is {deadline:?})");
    assert_eq!(
        pool.status().last_error.unwrap().message,
        "worker 1 did not answer within 1 s and was stopped"
    );
    assert_eq!(
        spawner.stops(),
        [StopRecord {
            id: 1,
            killed: true
        }]
    );
    // The hung thread is gone; worker 2's runs.
    until_live(&spawner, 1).await;
    pool.shutdown().await;
}

#[tokio::test]
async fn a_request_that_fails_twice_names_both_causes_within_the_deadline() {
    let config = PoolConfig {
        request_timeout: Duration::from_secs(1),
        ..config()
    };
    let deadline = config.answer_deadline();
    let spawner = TestSpawner::new(vec![
        Script::acts(&[Act::Hang]),
        Script::acts(&[Act::CrashOom]),
    ]);
    let pool = Pool::start(spawner, config);
    until(&pool, "the worker's hello", ready).await;

    let asked = StdInstant::now();
    let error = pool.embed(texts(&["my secret diary"])).await.unwrap_err();
    let took = asked.elapsed();
    assert!(took < deadline, "{took:?} (the deadline is {deadline:?})");
    assert_eq!(
        error,
        PoolError::Failed {
            first: "worker 1 did not answer within 1 s and was stopped".into(),
            second: "worker 2 was killed by the out-of-memory killer during a request".into(),
        }
    );
    assert_eq!(pool.status().restarts, 2);
    // Nothing of the text in the error, the status or the pool's Debug form.
    for shown in [
        error.to_string(),
        format!("{error:?}"),
        format!("{:?}", pool.status()),
        format!("{pool:?}"),
    ] {
        assert!(!shown.contains("secret"), "{shown}");
    }
    // The pool recovered.
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 3);
    pool.shutdown().await;
}

#[tokio::test]
async fn malformed_answers_count_as_failures() {
    let spawner = TestSpawner::new(vec![
        Script::acts(&[Act::WrongWidth]),
        Script::acts(&[Act::WrongCount]),
        Script::acts(&[Act::WrongId]),
    ]);
    let pool = Pool::start(spawner, config());
    let error = pool.embed(texts(&["a", "b"])).await.unwrap_err();
    assert_eq!(
        error,
        PoolError::Failed {
            first: "worker 1 broke the protocol during a request (vectors 2 wide instead of 3) \
                    and was stopped"
                .into(),
            second: "worker 2 broke the protocol during a request (3 vectors for 2 texts) \
                     and was stopped"
                .into(),
        }
    );
    // Worker 3 answers another request's id; worker 4 answers properly.
    assert_eq!(worker_of(&pool.embed(texts(&["a"])).await.unwrap()), 4);
    let status = pool.status();
    assert_eq!(status.restarts, 3);
    assert!(
        status
            .last_error
            .unwrap()
            .message
            .contains("an answer to request"),
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn a_healthy_workers_refusal_is_returned_without_a_retry() {
    let spawner = TestSpawner::new(vec![Script::acts(&[Act::Refuse])]);
    let pool = Pool::start(spawner.clone(), config());
    assert_eq!(
        pool.embed(texts(&["x"])).await.unwrap_err(),
        PoolError::Rejected {
            reason: FailReason::Inference,
            message: "the model refused (scripted)".into()
        }
    );
    // The same worker answers the next one.
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 1);
    let status = pool.status();
    assert_eq!((status.restarts, status.served), (0, 2));
    assert_eq!(spawner.attempts().len(), 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn limits_are_checked_before_any_worker_is_involved() {
    // No worker ever starts: a limit error proves none was asked.
    let pool = Pool::start(TestSpawner::failing(usize::MAX), config());
    assert_eq!(
        pool.embed(vec![String::new(); MAX_TEXTS + 1]).await,
        Err(PoolError::TooManyTexts {
            count: MAX_TEXTS + 1
        })
    );
    let long = "secret ".repeat(MAX_TEXT_BYTES / 7 + 1);
    let error = pool
        .embed(vec!["fine".into(), long.clone()])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PoolError::TextTooLong {
            index: 1,
            bytes: long.len()
        }
    );
    assert!(!error.to_string().contains("secret"));
    // Each text within its limit, together more than a frame holds.
    let count = MAX_FRAME_BYTES / MAX_TEXT_BYTES + 1;
    let error = pool
        .embed(vec!["x".repeat(MAX_TEXT_BYTES); count])
        .await
        .unwrap_err();
    assert!(
        matches!(error, PoolError::RequestTooLarge { bytes } if bytes > MAX_FRAME_BYTES),
        "{error:?}"
    );
    assert_eq!(pool.embed(Vec::new()).await, Ok(Vec::new()));
    assert_eq!(pool.status().served, 0);
    pool.shutdown().await;
}

#[tokio::test]
async fn while_no_worker_can_start_requests_fail_fast_then_the_pool_recovers() {
    let spawner = TestSpawner::failing(3);
    let pool = Pool::start(spawner.clone(), config());
    // Whether the first spawn has failed yet or not (then the request waits for it),
    // the answer comes long before any timeout.
    let asked = StdInstant::now();
    let error = pool.embed(texts(&["x"])).await.unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let PoolError::Unavailable {
        last_error,
        next_try_in,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        last_error,
        "starting a worker failed: the supervisor refused (scripted)"
    );
    assert!(
        *next_try_in <= Duration::from_millis(400),
        "{next_try_in:?}"
    );
    assert!(error.to_string().starts_with("no AI worker can start ("));

    // Tries again at 100, 200 and 400 ms intervals; the fourth spawn succeeds.
    until(&pool, "the worker's hello", ready).await;
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 1);
    let attempts = spawner.attempts();
    assert_eq!(attempts.len(), 4);
    for (gap, least) in attempts.windows(2).zip([100, 200, 400]) {
        let gap = gap[1] - gap[0];
        assert!(gap >= Duration::from_millis(least), "{gap:?} < {least} ms");
    }
    let status = pool.status();
    assert_eq!((status.start_failures, status.restarts), (3, 0));
    pool.shutdown().await;
}

#[tokio::test]
async fn a_request_fails_at_once_while_every_slot_backs_off() {
    let config = PoolConfig {
        workers: 2,
        backoff_initial: Duration::from_secs(5),
        backoff_max: Duration::from_secs(5),
        ..config()
    };
    let pool = Pool::start(TestSpawner::failing(usize::MAX), config);
    let status = until(&pool, "both slots backing off", |s| {
        s.slots.iter().all(|s| s.state == SlotState::BackingOff)
    })
    .await;
    assert!(status.slots.iter().all(|s| s.next_try_at.is_some()));
    let asked = StdInstant::now();
    let error = pool.embed(texts(&["x"])).await.unwrap_err();
    // Neither the backoff (5 s) nor a timeout was waited for.
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        matches!(&error, PoolError::Unavailable { next_try_in, .. }
            if *next_try_in > Duration::ZERO && *next_try_in <= Duration::from_secs(5)),
        "{error:?}"
    );
    assert_eq!(pool.status().queued, 0);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_never_says_hello_is_stopped_and_replaced() {
    let config = PoolConfig {
        hello_timeout: Duration::from_secs(1),
        ..config()
    };
    let spawner = TestSpawner::new(vec![Script {
        never_hello: true,
        ..Script::default()
    }]);
    let pool = Pool::start(spawner.clone(), config);
    let status = until(&pool, "worker 2's hello", |s| {
        ready(s) && s.slots[0].worker.as_ref().unwrap().id == 2
    })
    .await;
    assert_eq!(status.start_failures, 1);
    assert_eq!(
        status.last_error.unwrap().message,
        "worker 1 did not say hello within 1 s and was stopped"
    );
    assert_eq!(
        spawner.stops(),
        [StopRecord {
            id: 1,
            killed: true
        }]
    );
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_cannot_load_its_model_says_why() {
    let spawner = TestSpawner::new(vec![Script {
        rogue: true,
        cannot_start: true,
        ..Script::default()
    }]);
    let pool = Pool::start(spawner.clone(), config());
    let status = until(&pool, "worker 2's hello", |s| {
        ready(s) && s.slots[0].worker.as_ref().unwrap().id == 2
    })
    .await;
    assert_eq!(status.start_failures, 1);
    assert_eq!(
        status.last_error.unwrap().message,
        "worker 1 could not start: the model file is missing"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn a_request_waits_for_a_worker_that_is_still_loading() {
    let spawner = TestSpawner::new(vec![Script {
        load: Duration::from_millis(300),
        ..Script::default()
    }]);
    let asked = StdInstant::now();
    let pool = Pool::start(spawner, config());
    assert_eq!(pool.status().slots[0].state, SlotState::Starting);
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 1);
    assert!(asked.elapsed() >= Duration::from_millis(300));
    pool.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_dies_while_idle_is_replaced_before_the_next_request() {
    let spawner = TestSpawner::new(vec![Script {
        exit_after_hello: true,
        ..Script::default()
    }]);
    let pool = Pool::start(spawner, config());
    let status = until(&pool, "worker 2", |s| {
        ready(s) && s.slots[0].worker.as_ref().unwrap().id == 2
    })
    .await;
    assert_eq!(status.restarts, 1);
    assert_eq!(
        status.last_error.unwrap().message,
        "worker 1 exited while idle (exit status 0)"
    );
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn workers_are_recycled_after_max_requests() {
    let config = PoolConfig {
        max_requests: 2,
        ..config()
    };
    let spawner = TestSpawner::default();
    let pool = Pool::start(spawner.clone(), config);
    let mut served_by = Vec::new();
    for _ in 0..5 {
        served_by.push(worker_of(&pool.embed(texts(&["x"])).await.unwrap()));
    }
    assert_eq!(served_by, [1, 1, 2, 2, 3]);
    let status = pool.status();
    assert_eq!((status.recycled, status.restarts), (2, 0));
    assert_eq!(status.last_error, None);
    // Closing the socket was enough: neither worker had to be killed.
    assert_eq!(
        spawner.stops(),
        [
            StopRecord {
                id: 1,
                killed: false
            },
            StopRecord {
                id: 2,
                killed: false
            }
        ]
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn an_idle_worker_is_recycled_and_its_unused_successor_kept() {
    let config = PoolConfig {
        max_idle: Duration::from_millis(200),
        ..config()
    };
    let pool = Pool::start(TestSpawner::default(), config);
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 1);
    until(&pool, "a fresh worker", |s| {
        ready(s) && s.slots[0].worker.as_ref().unwrap().id == 2
    })
    .await;
    // Worker 2 has answered nothing: there is nothing to clear out of it.
    sleep(Duration::from_millis(600)).await;
    let status = pool.status();
    assert_eq!((status.recycled, status.restarts), (1, 0));
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn an_old_worker_finishes_its_request_before_it_is_recycled() {
    let config = PoolConfig {
        max_age: Duration::from_millis(200),
        ..config()
    };
    let spawner = TestSpawner::new(vec![Script::acts(&[Act::Slow(Duration::from_millis(600))])]);
    let pool = Pool::start(spawner, config);
    until(&pool, "the worker's hello", ready).await;
    // Worker 1 passes its age during the request, and still answers it.
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 1);
    let status = until(&pool, "worker 2", |s| {
        ready(s) && s.slots[0].worker.as_ref().unwrap().id == 2
    })
    .await;
    assert_eq!((status.recycled, status.restarts), (1, 0));
    assert_eq!(worker_of(&pool.embed(texts(&["x"])).await.unwrap()), 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn two_workers_serve_concurrent_callers() {
    let slow = Script::acts(&[Act::Slow(Duration::from_millis(200)); 8]);
    let spawner = TestSpawner::new(vec![slow.clone(), slow]);
    let pool = Pool::start(
        spawner,
        PoolConfig {
            workers: 2,
            ..config()
        },
    );
    until(&pool, "both hellos", ready).await;
    let callers: Vec<_> = (1..=8)
        .map(|n| {
            let pool = pool.clone();
            tokio::spawn(async move { (n, pool.embed(vec!["x".repeat(n)]).await) })
        })
        .collect();
    let mut workers = Vec::new();
    for caller in callers {
        let (n, answer) = caller.await.unwrap();
        let answer = answer.unwrap();
        // Each caller gets the vector of its own text.
        assert_eq!(answer[0][0], n as f32);
        workers.push(worker_of(&answer));
    }
    workers.sort_unstable();
    workers.dedup();
    assert_eq!(workers, [1, 2]);
    assert_eq!(pool.status().served, 8);
    pool.shutdown().await;
}

#[tokio::test]
async fn waiting_in_the_queue_counts_against_the_deadline() {
    let config = PoolConfig {
        request_timeout: Duration::from_secs(2),
        hello_timeout: Duration::from_secs(2),
        stop_grace: Duration::from_millis(100),
        ..config()
    };
    let deadline = config.answer_deadline();
    assert_eq!(deadline, Duration::from_millis(6200));
    let spawner = TestSpawner::new(vec![Script::acts(
        &[Act::Slow(Duration::from_millis(400)); 30],
    )]);
    let pool = Pool::start(spawner, config);
    until(&pool, "the worker's hello", ready).await;
    // Twenty requests of at least 400 ms each on one worker (8 s): the last ones cannot
    // be answered within the deadline, however fast the machine.
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let asked = StdInstant::now();
                (pool.embed(texts(&["x"])).await, asked.elapsed())
            })
        })
        .collect();
    let (mut answered, mut timed_out) = (0, 0);
    for caller in callers {
        let (result, took) = caller.await.unwrap();
        assert!(took < deadline + Duration::from_secs(1), "{took:?}");
        match result {
            Ok(_) => answered += 1,
            Err(PoolError::TimedOut {
                after,
                first_failure: None,
            }) => {
                assert_eq!(after, deadline);
                timed_out += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(answered > 0 && timed_out > 0, "{answered} {timed_out}");
    // The worker skipped the requests whose callers had given up.
    let status = until(&pool, "the queue to empty", |s| {
        s.queued == 0 && s.slots[0].state == SlotState::Ready
    })
    .await;
    assert!(status.served < 20, "{}", status.served);
    assert_eq!(status.restarts, 0);
    pool.shutdown().await;
}

#[tokio::test]
async fn shutdown_fails_waiting_requests_and_stops_every_worker() {
    let slow = Script::acts(&[Act::Slow(Duration::from_secs(30))]);
    let spawner = TestSpawner::new(vec![slow.clone(), slow]);
    let pool = Pool::start(
        spawner.clone(),
        PoolConfig {
            workers: 2,
            ..config()
        },
    );
    until(&pool, "both hellos", ready).await;
    let busy = |n: usize| {
        move |s: &PoolStatus<String>| {
            s.slots
                .iter()
                .filter(|s| s.state == SlotState::Busy)
                .count()
                == n
        }
    };
    let mut callers = Vec::new();
    for (n, check) in [busy(1), busy(2)].into_iter().enumerate() {
        let caller = pool.clone();
        callers.push(tokio::spawn(
            async move { caller.embed(texts(&["x"])).await },
        ));
        until(&pool, &format!("{} busy workers", n + 1), check).await;
    }
    let caller = pool.clone();
    callers.push(tokio::spawn(
        async move { caller.embed(texts(&["x"])).await },
    ));
    until(&pool, "a queued request", |s| s.queued == 1).await;

    let asked = StdInstant::now();
    pool.shutdown().await;
    // Two requests in flight, one queued: none waits for the slow workers.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Err(PoolError::ShutDown));
    }
    assert_eq!(pool.embed(texts(&["z"])).await, Err(PoolError::ShutDown));
    assert!(
        pool.status()
            .slots
            .iter()
            .all(|s| s.state == SlotState::Stopped && s.worker.is_none())
    );
    until_live(&spawner, 0).await;
    let mut stops = spawner.stops();
    stops.sort_by_key(|s| s.id);
    assert_eq!(
        stops,
        [
            StopRecord {
                id: 1,
                killed: true
            },
            StopRecord {
                id: 2,
                killed: true
            }
        ]
    );
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_workers() {
    let spawner = TestSpawner::default();
    let pool = Pool::start(spawner.clone(), config());
    until(&pool, "the worker's hello", ready).await;
    drop(pool);
    until_live(&spawner, 0).await;
}

#[test]
fn backoff_doubles_to_its_cap_and_starts_over() {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    backoff.reset();
    assert_eq!(backoff.next_delay(), Duration::from_secs(1));
}

#[test]
fn the_default_deadline_is_the_worst_case_of_two_failed_attempts() {
    // 2 × (30 s + 2 s) + 60 s.
    assert_eq!(
        PoolConfig::default().answer_deadline(),
        Duration::from_secs(124)
    );
}

#[test]
fn durations_read_well() {
    assert_eq!(human(Duration::from_secs(30)), "30 s");
    assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
    assert_eq!(human(Duration::from_millis(300)), "300 ms");
}
