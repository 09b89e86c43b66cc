//! Password hashing with argon2id (OWASP parameters), always off the async runtime.
//!
//! Hashing costs ~20 MiB and tens of milliseconds, so it runs on a fixed set of threads of its
//! own (`argon2-hasher`), one per permit: a storm of logins queues here instead of stalling the
//! runtime, exhausting memory or growing the process's thread count. (Not Tokio's blocking pool:
//! when one hash ends and the next begins at the same moment, it can start a new thread before
//! the old one is idle again, so its thread count drifts above the permits.) A login for an
//! unknown user verifies against a dummy hash, so the answer takes the same time whether or not
//! the username exists.
//!
//! There are as many hashing threads as cores, so sign-in can use the whole machine, and they
//! run at a lower scheduling priority ([`HASHER_NICENESS`]): when a request is ready on the
//! runtime, the kernel runs it ahead of a hash, so a login storm costs the other requests
//! almost no latency, and hashing gets every cycle the runtime leaves.

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

/// The hashing threads' niceness, the lowest priority there is (0 is normal): when they compete
/// with the runtime's threads for a core, they get a sliver of it (the kernel's weights for
/// niceness 19 and 0 are 15 and 1024), and all of it when the runtime is idle (bench/RESULTS.md
/// compares it with niceness 10).
pub const HASHER_NICENESS: i8 = 19;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("a password hashing thread panicked")]
    Panicked,
    #[error("password hashing queue closed")]
    Closed,
    #[error("too many requests are waiting for a password check")]
    Busy,
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants known to be valid.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The hasher shared by all requests.
///
/// Two bounds: `permits` hashes run at once, and at most `queue` more requests wait for one.
/// A hash holds its permit until it has finished, even when the request that asked for it was
/// abandoned (the client hung up): the hashing thread runs on, so the permit must too, or
/// abandoned requests would pile up hashes. A request beyond the queue is
/// refused at once ([`PasswordError::Busy`], a 503) before any work.
#[derive(Clone)]
pub struct Passwords {
    threads: Hashers,
    permits: Arc<Semaphore>,
    active: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    queue: Arc<Semaphore>,
    /// Places in the queue in all.
    places: usize,
    /// A real argon2id hash of a random password: verifying against it costs what a real check costs.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("available_permits", &self.permits.available_permits())
            .field("queue_places", &self.queue.available_permits())
            .finish_non_exhaustive()
    }
}

/// A place in the hashing queue, taken before any other work of a request that will hash.
/// Dropping it (the request was refused or abandoned) gives the place back.
#[must_use]
pub struct Ticket {
    place: OwnedSemaphorePermit,
    threads: Hashers,
    permits: Arc<Semaphore>,
    active: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// Requests that may wait for a hash, per hash that may run at once.
    pub const QUEUE_PER_HASHER: usize = 64;

    /// Builds the hasher; `concurrency` is how many hashes may run at once.
    pub fn new(concurrency: usize) -> Result<Self, PasswordError> {
        let concurrency = concurrency.max(1);
        Self::with_queue(concurrency, concurrency * Self::QUEUE_PER_HASHER)
    }

    /// [`new`](Self::new) with an explicit queue length.
    pub fn with_queue(concurrency: usize, queue: usize) -> Result<Self, PasswordError> {
        let random: [u8; 16] = rand::random();
        let dummy = hash_blocking(&format!("{random:x?}"))?;
        let concurrency = concurrency.max(1);
        Ok(Self {
            threads: Hashers::start(concurrency)?,
            permits: Arc::new(Semaphore::new(concurrency)),
            active: Arc::default(),
            started: Arc::default(),
            queue: Arc::new(Semaphore::new(queue.max(1))),
            places: queue.max(1),
            dummy_hash: dummy.into(),
        })
    }

    /// A place in the queue, or [`PasswordError::Busy`] when it is full.
    pub fn ticket(&self) -> Result<Ticket, PasswordError> {
        let place = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| PasswordError::Busy)?;
        Ok(Ticket {
            place,
            threads: self.threads.clone(),
            permits: self.permits.clone(),
            active: self.active.clone(),
            started: self.started.clone(),
            dummy_hash: self.dummy_hash.clone(),
        })
    }

    /// Requests holding a place in the queue now: waiting for a hash or hashing (the depth of
    /// the hashing queue; at [`QUEUE_PER_HASHER`](Self::QUEUE_PER_HASHER) per hasher, the next
    /// is refused as busy).
    pub fn queued(&self) -> usize {
        self.places.saturating_sub(self.queue.available_permits())
    }

    /// Hashes running now, counted by the hashing threads themselves.
    pub fn running(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Hashes started since the hasher was built (the dummy hash's excepted), counted by the
    /// hashing threads: how the tests see which checks hashed.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.ticket()?.hash(password).await
    }

    /// Checks `password` against `phc` (see [`Ticket::verify`]).
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.ticket()?.verify(password, phc).await
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads: as many as there are permits, started once and named `argon2-hasher`.
/// They end when the last [`Passwords`] (and every [`Ticket`]) is dropped.
#[derive(Clone)]
struct Hashers {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Hashers {
    const NAME: &'static str = "argon2-hasher";

    fn start(count: usize) -> Result<Self, PasswordError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for _ in 0..count {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(Self::NAME.into())
                .spawn(move || {
                    lower_priority();
                    loop {
                        // One thread waits on the channel, the others on the lock; a poisoned
                        // lock is impossible (nothing panics while holding it) but is not fatal
                        // either.
                        let job = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok(job) = job else { return };
                        // A panicking hash fails its own request (its answer channel is
                        // dropped), never the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .map_err(|e| PasswordError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on a hashing thread and waits for its answer. Dropping the future does not
    /// stop work that has started.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                // Abandoned between the hand-over and the start: nobody wants the answer.
                if !answer.is_closed() {
                    let _ = answer.send(work());
                }
            }))
            .map_err(|_| PasswordError::Closed)?;
        answered.await.map_err(|_| PasswordError::Panicked)
    }
}

/// Gives the calling thread [`HASHER_NICENESS`]. Where the system refuses (no such call on the
/// platform, a sandbox forbidding it), hashing runs at normal priority: slower answers for the
/// other requests during a login storm, nothing worse, so it is logged and not fatal.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    // The crate maps 0..=99 onto niceness 19..=-20 (rounding toward 19); this is the value
    // that lands on ours (a test reads the niceness back).
    let value = ((19 - i32::from(HASHER_NICENESS)) * 99 / 39).clamp(0, 99);
    let done = u8::try_from(value)
        .ok()
        .and_then(|v| ThreadPriorityValue::try_from(v).ok())
        .ok_or_else(|| "no such priority".to_string())
        .and_then(|v| {
            thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(v))
                .map_err(|e| format!("{e:?}"))
        });
    if let Err(e) = done {
        tracing::warn!(error = %e, "cannot lower the hashing threads' priority; they run at normal priority");
    }
}

/// Hashes a second of our parameters on `threads` threads at once, each hashing for `duration`
/// at normal priority with nothing else of ours running: the machine's limit for password
/// checks, which sign-in is measured against (`server hash-rate`).
pub fn hash_rate(threads: usize, duration: std::time::Duration) -> Result<f64, PasswordError> {
    let threads = threads.max(1);
    let start = std::time::Instant::now();
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut hashed = 0u64;
                    while start.elapsed() < duration {
                        hash_blocking("a password of a typical length")?;
                        hashed += 1;
                    }
                    Ok::<_, PasswordError>((hashed, start.elapsed()))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| PasswordError::Panicked)?)
            .collect::<Result<Vec<_>, _>>()
    })?;
    // Each thread's own rate (it ends a hash after the deadline), summed.
    Ok(counts
        .iter()
        .map(|(hashed, took)| *hashed as f64 / took.as_secs_f64())
        .sum())
}

/// Counts a hash as running for as long as it lives, panics included.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(active: Arc<AtomicUsize>, started: &AtomicUsize) -> Self {
        started.fetch_add(1, Ordering::Relaxed);
        active.fetch_add(1, Ordering::Relaxed);
        Self(active)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Ticket {
    /// Waits for a permit, then runs `work` on a hashing thread with the permit moved into it:
    /// the permit is released when the work ends, not when this future is dropped.
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Closed)?;
        // Hashing now: the place in the queue is free for the next request.
        drop(self.place);
        let (active, started) = (self.active, self.started);
        self.threads
            .run(move || {
                let _permit = permit;
                let _running = Running::start(active, &started);
                work()
            })
            .await
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(self, password: String) -> Result<String, PasswordError> {
        self.run(move || hash_blocking(&password)).await?
    }

    /// Checks `password` against `phc`, or against the dummy hash when there is no user,
    /// in which case the answer is always `false` but takes as long.
    pub async fn verify(
        self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self.run(move || verify_blocking(&password, &phc)).await?;
        Ok(known && ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let p = Passwords::new(2).unwrap();
        let phc = p.hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(p
            .verify("correct horse battery".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!p
            .verify("wrong horse battery".into(), Some(phc))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn same_password_gets_a_new_salt() {
        let p = Passwords::new(2).unwrap();
        let a = p.hash("same password".into()).await.unwrap();
        let b = p.hash("same password".into()).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let p = Passwords::new(1).unwrap();
        assert!(!p.verify("anything at all".into(), None).await.unwrap());
    }

    /// Requests abandoned while hashing (their future dropped) keep their permit until the hash
    /// ends: never more hashes run than there are permits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_requests_never_run_more_hashes_than_permits() {
        let p = Passwords::with_queue(1, 1000).unwrap();
        let mut most = 0;
        for _ in 0..40 {
            let task = tokio::spawn({
                let p = p.clone();
                async move { p.verify("some password".into(), None).await }
            });
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            task.abort();
            most = most.max(p.running());
        }
        assert!(most <= 1, "{most} hashes ran at once");
        // Once they finish, every permit is back.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while p.running() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a permit was never returned"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_before_any_work() {
        let p = Passwords::with_queue(1, 2).unwrap();
        let a = p.ticket().unwrap();
        let b = p.ticket().unwrap();
        assert!(matches!(p.ticket(), Err(PasswordError::Busy)));
        drop(a);
        let c = p.ticket().unwrap();
        // A ticket gives its place back once its hash starts.
        assert!(!b.verify("some password".into(), None).await.unwrap());
        let _d = p.ticket().unwrap();
        drop(c);
    }

    /// A hash that panics fails its own request; the hashing thread and the permit survive it.
    #[tokio::test]
    async fn a_panicking_hash_fails_its_request_not_the_hasher() {
        let p = Passwords::with_queue(1, 4).unwrap();
        let failed = p
            .ticket()
            .unwrap()
            .run(|| -> bool { std::panic::panic_any("a hash went wrong") })
            .await;
        assert!(matches!(failed, Err(PasswordError::Panicked)), "{failed:?}");
        assert_eq!(p.running(), 0);
        // The one thread is still there and the one permit is back.
        for _ in 0..2 {
            assert!(!p.verify("some password".into(), None).await.unwrap());
        }
    }

    /// The hashing threads run at the lower priority; the threads that ask for hashes do not.
    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        fn niceness() -> i64 {
            // Field 19 of /proc/thread-self/stat, counted after the command's closing paren.
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(16).unwrap().parse().unwrap()
        }
        let ours = niceness();
        let p = Passwords::with_queue(2, 4).unwrap();
        let seen = p.ticket().unwrap().run(niceness).await.unwrap();
        assert_eq!(seen, i64::from(HASHER_NICENESS));
        assert_eq!(niceness(), ours);
    }

    #[test]
    fn the_hash_rate_counts_hashes_on_every_thread() {
        let one = hash_rate(1, std::time::Duration::from_millis(300)).unwrap();
        assert!(one > 1.0, "{one} hashes a second");
    }

    #[tokio::test]
    async fn corrupt_hash_does_not_verify() {
        let p = Passwords::new(1).unwrap();
        assert!(!p
            .verify("anything".into(), Some("not a hash".into()))
            .await
            .unwrap());
    }
}
