//! Password hashing on a fixed set of threads, with a bounded queue in front of them.
//!
//! An argon2id hash needs `m` KiB of working memory: 19 MiB with the default parameters. On
//! actix's blocking pool every waiting login had a thread of its own (up to 512), each
//! allocating its own buffer from its own allocator arena, and a flood of logins grew the
//! process to gigabytes that it never gave back. Here each of a fixed number of threads owns
//! one buffer for the life of the process, so the memory spent on hashing is at most threads ×
//! m whatever the load, and a login that finds the queue full is turned away at once with
//! [`Busy`] (which the handlers answer with `503` and `Retry-After`) instead of waiting.

use std::{
    num::NonZeroUsize,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{
        self,
        phc::{Output, ParamsString, PasswordHash, Salt},
    },
};
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;

/// What a refused login's `Retry-After` says, in seconds: the default queue holds about a
/// second of work, so by then it has room again.
pub const RETRY_AFTER_SECS: &str = "1";

/// How much queued work [`queue_for_one_second`] aims at.
const QUEUED_WORK: Duration = Duration::from_secs(1);

/// A stored argon2 hash, taken apart once (when the accounts are loaded) so that a check only
/// hashes.
#[derive(Debug, Clone)]
pub struct StoredHash {
    argon2: Argon2<'static>,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl FromStr for StoredHash {
    type Err = password_hash::Error;

    /// Parses a PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    fn from_str(phc: &str) -> Result<Self, Self::Err> {
        let phc = PasswordHash::new(phc)?;
        let algorithm = Algorithm::try_from(phc.algorithm.as_str())?;
        let version = phc
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        // Takes the output length from the stored hash as well.
        let params = Params::try_from(&phc)?;
        let salt = phc.salt.ok_or(password_hash::Error::SaltInvalid)?;
        let expected = phc.hash.ok_or(password_hash::Error::OutputSize)?;
        Ok(Self {
            argon2: Argon2::new(algorithm, version, params),
            salt: salt.to_vec(),
            expected: expected.as_bytes().to_vec(),
        })
    }
}

impl StoredHash {
    /// A hash of the default parameters that no password matches: its output is random bytes,
    /// not a hash of anything. Checking a password against it costs what checking against a
    /// real hash does, which is all a decoy is for.
    pub fn decoy() -> Self {
        let mut salt = vec![0u8; argon2::RECOMMENDED_SALT_LEN];
        rand::fill(salt.as_mut_slice());
        let mut expected = vec![0u8; Params::DEFAULT_OUTPUT_LEN];
        rand::fill(expected.as_mut_slice());
        Self {
            argon2: Argon2::default(),
            salt,
            expected,
        }
    }
}

/// One thread's argon2 working memory, kept from one hash to the next.
#[derive(Debug, Default)]
pub struct Hasher {
    memory: Vec<Block>,
}

impl Hasher {
    /// A hasher with no memory yet: it allocates on its first hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first `params.block_count()` blocks of the buffer, which grows to the largest
    /// `m` it has seen (the default, unless an accounts file holds costlier hashes).
    fn memory_for(&mut self, params: &Params) -> &mut [Block] {
        let needed = params.block_count();
        if self.memory.len() < needed {
            self.memory.resize(needed, Block::new());
        }
        &mut self.memory[..needed]
    }

    /// Whether `password` hashes to `stored`, compared in constant time.
    pub fn verify(&mut self, stored: &StoredHash, password: &[u8]) -> bool {
        let mut buffer = [0u8; Output::MAX_LENGTH];
        let Some(out) = buffer.get_mut(..stored.expected.len()) else {
            return false;
        };
        let memory = self.memory_for(stored.argon2.params());
        stored
            .argon2
            .hash_password_into_with_memory(password, &stored.salt, out, memory)
            .is_ok()
            && bool::from(out.ct_eq(&stored.expected))
    }

    /// An argon2id hash of `password` with the default parameters and a fresh salt, as a PHC
    /// string.
    ///
    /// # Errors
    /// When hashing fails (it does not with the default parameters).
    pub fn hash(&mut self, password: &[u8]) -> Result<String, password_hash::Error> {
        let argon2 = Argon2::default();
        let mut salt = [0u8; argon2::RECOMMENDED_SALT_LEN];
        rand::fill(&mut salt);
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let memory = self.memory_for(argon2.params());
        argon2.hash_password_into_with_memory(password, &salt, &mut out, memory)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::default().into()),
            params: ParamsString::try_from(argon2.params())?,
            salt: Some(Salt::new(&salt)?),
            hash: Some(Output::new(&out)?),
        };
        Ok(phc.to_string())
    }
}

/// A login whose password check could not even be queued: every hashing thread is busy and
/// the queue is full. Answer `503` with `Retry-After:` [`RETRY_AFTER_SECS`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many logins at once: try again in a moment")]
pub struct Busy;

/// Work for a hashing thread.
type Job = Box<dyn FnOnce(&mut Hasher) + Send>;

/// A fixed set of hashing threads behind a bounded queue. Cloning shares it.
#[derive(Debug, Clone)]
pub struct HashingPool {
    jobs: mpsc::SyncSender<Job>,
    /// Jobs queued and not yet taken by a thread (for [`has_room`](Self::has_room)).
    waiting: Arc<AtomicUsize>,
    threads: NonZeroUsize,
    queue: usize,
}

impl HashingPool {
    /// Starts `threads` hashing threads, with room for `queue` jobs waiting for one of them
    /// (by default, about a second of work: see [`queue_for_one_second`]).
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(threads: NonZeroUsize, queue: Option<usize>) -> std::io::Result<Self> {
        let mut first = Hasher::new();
        let queue = queue.unwrap_or_else(|| queue_for_one_second(threads, &mut first));
        let (jobs, waiting) = mpsc::sync_channel(queue);
        let waiting = Arc::new(Mutex::new(waiting));
        let hashers = std::iter::once(first).chain(std::iter::repeat_with(Hasher::new));
        for (index, hasher) in hashers.take(threads.get()).enumerate() {
            let waiting = Arc::clone(&waiting);
            thread::Builder::new()
                .name(format!("hashing-{index}"))
                .spawn(move || work(hasher, &waiting))?;
        }
        Ok(Self {
            jobs,
            waiting: Arc::new(AtomicUsize::new(0)),
            threads,
            queue,
        })
    }

    /// How many threads hash.
    pub fn threads(&self) -> NonZeroUsize {
        self.threads
    }

    /// How many jobs may wait for a thread.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Whether the queue has room now: a login that would find it full can be turned away
    /// before it costs anything else (the login throttle's round trip to Redis). Only a
    /// hint: the queue may fill before the job comes, and then [`run`](Self::run) answers
    /// [`Busy`] all the same.
    pub fn has_room(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) < self.queue
    }

    /// Queues `task` for a hashing thread now, and resolves to its result; or, when the
    /// queue is full, to [`Busy`] at once.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full (or, which does not happen, the threads are gone).
    pub fn run<R, F>(&self, task: F) -> impl Future<Output = Result<R, Busy>> + use<R, F>
    where
        R: Send + 'static,
        F: FnOnce(&mut Hasher) -> R + Send + 'static,
    {
        let (result, answer) = oneshot::channel();
        let waiting = Arc::clone(&self.waiting);
        // Counted before it is sent, so that the thread that takes it never counts it off
        // first.
        waiting.fetch_add(1, Ordering::Relaxed);
        let taken = Arc::clone(&waiting);
        let job: Job = Box::new(move |hasher| {
            taken.fetch_sub(1, Ordering::Relaxed);
            // The request was dropped while it waited (its client hung up): spare the work.
            if result.is_closed() {
                return;
            }
            let _ = result.send(task(hasher));
        });
        let queued = self.jobs.try_send(job).map_err(|_| {
            waiting.fetch_sub(1, Ordering::Relaxed);
            Busy
        });
        async move {
            queued?;
            answer.await.map_err(|_| Busy)
        }
    }
}

/// A hashing thread: takes jobs until the pool is dropped, always with the same memory.
fn work(mut hasher: Hasher, waiting: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, never while one runs: one idle
        // thread waits on the channel, the others on the lock.
        let job = match waiting.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        job(&mut hasher);
    }
}

/// The default number of hashing threads: one per core.
///
/// Hashing is pure CPU, so threads beyond the cores add memory (19 MiB each) and no speed,
/// and fewer threads than cores leave logins waiting while a core idles. Measured with
/// `scripts/floods` on this project's 2-core machines (release build, 8 concurrent logins,
/// wrk and Redis on the same cores, three runs each): one thread logged in 89 to 93 users a
/// second, two 123 to 152, four 99 to 125 with twice the memory; the slowest `/healthz` took
/// 2 to 11, 6 to 11 and 19 to 24 ms. The actix workers stay responsive with every core
/// hashing because they sleep on their sockets, and the kernel's scheduler runs a thread that
/// wakes from sleep ahead of threads that have used up their share (the hashers).
/// `tests/tests/login_flood.rs` checks it: `/healthz` within 250 ms under 64 concurrent logins.
pub fn default_threads() -> NonZeroUsize {
    thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// A queue bound holding about a second of work for `threads` threads, found by timing one
/// hash with the default parameters on `hasher` now (a few tens of milliseconds), so that it
/// suits the machine. The hasher keeps the memory, for the thread that gets it.
pub fn queue_for_one_second(threads: NonZeroUsize, hasher: &mut Hasher) -> usize {
    let started = Instant::now();
    let _ = hasher.hash(b"how long does one hash take");
    let one_hash = started.elapsed().as_micros().max(1);
    let per_thread = usize::try_from(QUEUED_WORK.as_micros() / one_hash).unwrap_or(usize::MAX);
    per_thread
        .saturating_mul(threads.get())
        .clamp(threads.get(), 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let mut hasher = Hasher::new();
        let phc = hasher.hash(b"s3cret").expect("hash");
        let stored: StoredHash = phc.parse().expect("a PHC string");
        assert!(hasher.verify(&stored, b"s3cret"));
        assert!(!hasher.verify(&stored, b"s3cret "));
    }

    #[test]
    fn hashes_from_the_argon2_crate_verify_with_reused_memory() {
        use argon2::password_hash::PasswordHasher as _;
        let phc = Argon2::default()
            .hash_password(b"hunter42")
            .expect("hash")
            .to_string();
        let stored: StoredHash = phc.parse().expect("a PHC string");
        let mut hasher = Hasher::new();
        for _ in 0..2 {
            assert!(hasher.verify(&stored, b"hunter42"));
            assert!(!hasher.verify(&stored, b"hunter43"));
        }
    }

    #[test]
    fn other_parameters_and_algorithms_are_honoured() {
        // argon2i, m = 64 KiB, t = 3, p = 2, from the argon2 crate's own test vectors.
        let argon2 = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(64, 3, 2, Some(24)).expect("params"),
        );
        let phc = argon2::password_hash::PasswordHasher::hash_password_with_salt(
            &argon2,
            b"password",
            b"somesaltsomesalt",
        )
        .expect("hash")
        .to_string();
        let stored: StoredHash = phc.parse().expect("a PHC string");
        let mut hasher = Hasher::new();
        assert!(hasher.verify(&stored, b"password"));
        assert!(!hasher.verify(&stored, b"passwore"));
    }

    #[test]
    fn no_password_matches_the_decoy() {
        let decoy = StoredHash::decoy();
        let mut hasher = Hasher::new();
        assert!(!hasher.verify(&decoy, b""));
        assert!(!hasher.verify(&decoy, b"alice-password"));
        assert_eq!(
            decoy.argon2.params().block_count(),
            Params::default().block_count(),
            "a decoy costs what a default hash does"
        );
    }

    #[test]
    fn non_argon2_strings_are_refused() {
        assert!("$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E".parse::<StoredHash>().is_err());
        assert!(
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ"
                .parse::<StoredHash>()
                .is_err()
        );
        assert!("plaintext".parse::<StoredHash>().is_err());
    }

    #[test]
    fn a_full_queue_answers_busy_at_once() {
        let pool = HashingPool::start(NonZeroUsize::MIN, Some(1)).expect("a thread");
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let running = pool.run(move |_| {
            let _ = started_tx.send(());
            let _ = hold.recv();
            1
        });
        started.recv().expect("the first job runs");
        assert!(pool.has_room(), "the running job waits in no queue");
        let queued = pool.run(|_| 2);
        assert!(!pool.has_room());
        actix_web::rt::System::new().block_on(async {
            assert!(matches!(pool.run(|_| 3).await, Err(Busy)));
            release.send(()).expect("the first job waits");
            assert_eq!(running.await.ok(), Some(1));
            assert_eq!(queued.await.ok(), Some(2), "a queued job still runs");
        });
        assert!(pool.has_room(), "the queue emptied");
    }
}
