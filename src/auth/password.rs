//! Password hashing (argon2id with OWASP's parameters) and the password policy.
//!
//! Hashing is deliberately slow, so it runs on its own threads, one per CPU, fed from one
//! queue: a burst of logins queues there instead of starving the async runtime, and a hashing
//! thread goes from one hash straight to the next without waiting for the runtime to hand it
//! over.

use std::{
    collections::HashSet,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, mpsc},
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use rand::RngCore;

use crate::http::{AppError, error::FieldError};

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

pub const MIN_LEN: usize = 8;
/// Long enough for any passphrase, short enough that hashing cost stays bounded.
pub const MAX_LEN: usize = 128;

const COMMON_PASSWORDS: &str = include_str!("../../assets/common-passwords.txt");

/// The common-password list as a set, built at the first policy check (about 0.4 MiB that a
/// server nobody signs up to never needs).
static COMMON: std::sync::LazyLock<HashSet<&'static str>> =
    std::sync::LazyLock::new(|| COMMON_PASSWORDS.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect());

/// Hashes and verifies passwords off the async threads.
pub struct Passwords {
    /// The hashing threads' queue; they end when it is dropped.
    jobs: mpsc::Sender<Job>,
}

/// A hash to compute on a hashing thread, with that thread's working memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// A real argon2id hash, with the parameters above, of a random password nobody knows:
/// verifying against it when an email is unknown makes "no such user" take as long as "wrong
/// password". A constant, so start-up does not pay a 19 MiB hash for it.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$67w5f/qyVb6Hmqztw5WoBg$2A4HlpXbFoZVOeuEcTxAH2kjiFf6nauNxY+1UQzff78";

fn params() -> Params {
    Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).expect("valid argon2 parameters")
}

/// Working memory for one hash (19 MiB at the parameters above). The server keeps one per
/// hashing thread, allocated at its first hash, and reuses it: a fresh 19 MiB per login would
/// be mapped, faulted in and given back every time, and the allocator's per-thread arenas
/// would hold on to hundreds of MiB under a burst of logins.
///
/// On Linux the blocks start on a 2 MiB boundary and the range is advised for transparent huge
/// pages (`MADV_HUGEPAGE`, honoured when THP is `always` or `madvise`, the usual default).
/// argon2 reads its memory at data-dependent places, so with 4 KiB pages nearly every block it
/// reads is a TLB miss: on huge pages a hash is ~12% faster on this project's bench machine
/// (bench/notes/identity.md). Where the kernel declines, the memory is ordinary pages.
#[derive(Default)]
pub struct Memory {
    buffer: Vec<Block>,
    /// Where the blocks start in `buffer`: the first block at a 2 MiB boundary (or less than a
    /// block after it: the allocator aligns blocks to 64 bytes, not to their 1 KiB size).
    start: usize,
    blocks: usize,
}

impl Memory {
    /// Memory for hashes with `params`.
    pub fn for_params(params: &Params) -> Self {
        let blocks = params.block_count();
        let block = std::mem::size_of::<Block>();
        const HUGE_PAGE: usize = 2 << 20;
        // Room to move the start to a boundary, and for the last, partly used huge page.
        let spare = if cfg!(target_os = "linux") { 2 * HUGE_PAGE / block } else { 0 };
        let mut buffer: Vec<Block> = Vec::with_capacity(blocks + spare);
        let addr = buffer.as_ptr() as usize;
        let start = if spare == 0 { 0 } else { (addr.next_multiple_of(HUGE_PAGE) - addr).div_ceil(block) };
        #[cfg(target_os = "linux")]
        advise_huge_pages(addr, (blocks + spare) * block);
        // Filled (faulted in) only after the advice, so the faults can take huge pages.
        buffer.resize(start + blocks, Block::default());
        Self { buffer, start, blocks }
    }

    /// The blocks for a hash with `params`, reallocated first if they are another size.
    pub fn blocks_for(&mut self, params: &Params) -> &mut [Block] {
        if self.blocks != params.block_count() {
            *self = Self::for_params(params);
        }
        &mut self.buffer[self.start..self.start + self.blocks]
    }
}

/// `madvise(MADV_HUGEPAGE)` on the whole pages inside `[addr, addr + len)`. Advice only: an
/// error (an old kernel, THP off) leaves ordinary pages, so it is ignored.
#[cfg(target_os = "linux")]
fn advise_huge_pages(addr: usize, len: usize) {
    const PAGE: usize = 4096;
    let (from, to) = (addr.next_multiple_of(PAGE), (addr + len) / PAGE * PAGE);
    if to > from {
        // SAFETY: the range lies inside an allocation this thread owns, and MADV_HUGEPAGE only
        // changes how its pages may be backed, never their contents.
        unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
    }
}

/// Hashes into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), using `memory`.
fn hash_with(password: &str, memory: &mut Memory) -> anyhow::Result<String> {
    let params = params();
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory.blocks_for(&params))
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Verifies against a PHC string with the parameters it names (so older hashes keep working
/// after a parameter change), using `memory` when it is the right size.
fn verify_with(password: &str, hash: &str, memory: &mut Memory) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm.as_str()), Params::try_from(&parsed))
    else {
        return false;
    };
    let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or_default();
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let mut out = vec![0u8; expected.as_bytes().len()];
    let blocks = memory.blocks_for(&params);
    if Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
        .is_err()
    {
        return false;
    }
    crate::util::constant_time_eq(&out, expected.as_bytes())
}

/// Hashes synchronously (for benchmarks and seeding; the server uses [`Passwords::hash`]).
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    hash_with(password, &mut Memory::default())
}

/// Verifies synchronously (benchmarks); the server uses [`Passwords::verify`].
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    verify_with(password, hash, &mut Memory::default())
}

impl Passwords {
    /// Starts one hashing thread per CPU.
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..cpus {
            let queue = queue.clone();
            let spawned =
                std::thread::Builder::new().name(format!("mash-hash-{i}")).spawn(move || hashing_thread(&queue));
            if let Err(e) = spawned {
                // The others share the queue; with none at all, every hash answers 500.
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Self { jobs }
    }

    /// Checks the policy: 400 with `details` naming `field` when the password is too short,
    /// too long, or one of the common passwords that ship in the binary.
    pub fn check_policy(&self, field: &str, password: &str) -> Result<(), AppError> {
        let len = password.chars().count();
        let problem = if len < MIN_LEN {
            Some(format!("must be at least {MIN_LEN} characters"))
        } else if len > MAX_LEN {
            Some(format!("must be at most {MAX_LEN} characters"))
        } else if COMMON.contains(password.to_lowercase().as_str()) {
            Some("is too common; choose a less guessable password".to_string())
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(message) => Err(AppError::BadRequest {
                message: format!("{field} {message}"),
                details: vec![FieldError::new(field, message)],
            }),
        }
    }

    /// Runs `work` on a hashing thread, with that thread's working memory. A request that is
    /// gone (its client hung up, or it timed out) before its turn comes costs no hash.
    async fn with_memory<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let (answer, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            if !answer.is_closed() {
                let _ = answer.send(work(memory));
            }
        });
        self.jobs.send(job).map_err(|_| AppError::Internal(anyhow::anyhow!("password hashing threads are gone")))?;
        result.await.map_err(|_| AppError::Internal(anyhow::anyhow!("password hashing failed")))
    }

    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let password = password.to_owned();
        self.with_memory(move |memory| hash_with(&password, memory)).await?.map_err(AppError::Internal)
    }

    /// Verifies `password` against `hash`; with no hash (unknown user, or an account without a
    /// password) it still spends the same time and answers `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AppError> {
        let password = password.to_owned();
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (DUMMY_HASH.to_owned(), false),
        };
        let ok = self.with_memory(move |memory| verify_with(&password, &hash, memory)).await?;
        Ok(ok && real)
    }
}

/// Takes jobs from `queue` until every sender is gone. A job that panics loses only its own
/// answer (its caller gets a 500); the thread goes on with the next.
fn hashing_thread(queue: &Mutex<mpsc::Receiver<Job>>) {
    let mut memory = Memory::default();
    loop {
        // Only the thread holding the lock waits in `recv`; the others wait for the lock.
        let job = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            memory = Memory::default();
        }
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the kernel offers transparent huge pages on advice, the hashing memory gets them.
    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_memory_is_on_huge_pages_where_the_kernel_offers_them() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        let mut memory = Memory::for_params(&params());
        let blocks = memory.blocks_for(&params());
        assert_eq!(blocks.len(), params().block_count());
        let (from, to) = (blocks.as_ptr() as usize, blocks.as_ptr() as usize + std::mem::size_of_val(blocks));
        // The first block starts on a 2 MiB boundary, or just after it when the allocator's
        // alignment (64 bytes) puts no block boundary there.
        assert!(from % (2 << 20) < std::mem::size_of::<Block>(), "the blocks start at a huge page: {from:#x}");
        if !(mode.contains("[always]") || mode.contains("[madvise]")) {
            return;
        }
        // The mapping holding the blocks, from /proc/self/smaps: its AnonHugePages line.
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut huge_kib = None;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = a <= from && from < b && to <= b;
            } else if inside && let Some(kib) = line.strip_prefix("AnonHugePages:") {
                huge_kib = kib.trim().trim_end_matches("kB").trim().parse::<usize>().ok();
            }
        }
        // 19 MiB from a 2 MiB boundary: ten huge pages, the last one half used.
        assert!(huge_kib.unwrap_or(0) >= 10 * 2048, "AnonHugePages {huge_kib:?} kB ({mode})");
    }

    #[test]
    fn policy() {
        let p = Passwords::new();
        assert!(p.check_policy("password", "short").is_err());
        assert!(p.check_policy("password", "password123").is_err(), "common");
        assert!(p.check_policy("password", "PASSWORD123").is_err(), "common, any case");
        assert!(p.check_policy("password", &"x".repeat(129)).is_err());
        assert!(p.check_policy("password", "correct horse battery staple").is_ok());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new();
        let h = p.hash("correct horse battery staple").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse battery staple", Some(&h)).await.unwrap());
        assert!(!p.verify("wrong", Some(&h)).await.unwrap());
        assert!(!p.verify("anything", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_panicking_hash_fails_alone_and_the_threads_go_on() {
        let p = Passwords::new();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        // More panics than threads: a thread that died with its job would leave none behind.
        for _ in 0..threads + 1 {
            let failed =
                tokio::time::timeout(std::time::Duration::from_secs(60), p.with_memory(|_| -> u32 { panic!("boom") }))
                    .await
                    .expect("a hashing thread answers");
            assert!(matches!(failed, Err(AppError::Internal(_))), "{failed:?}");
        }
        let h = p.hash("correct horse battery staple").await.unwrap();
        // Concurrent verifications all get their own answer.
        let checks = (0..4).map(|i| {
            let password = if i % 2 == 0 { "correct horse battery staple" } else { "wrong horse" };
            p.verify(password, Some(&h))
        });
        let answers: Vec<bool> = futures_util::future::join_all(checks).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, vec![true, false, true, false]);
    }

    #[test]
    fn hashes_interoperate_with_the_reference_encoder() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verifies with argon2's own verifier, and argon2's own hash verifies with ours.
        let ours = hash_blocking("interop passphrase").unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        assert!(reference.verify_password(b"interop passphrase", ours.as_str()).is_ok());
        let theirs = reference.hash_password(b"interop passphrase").unwrap().to_string();
        assert!(verify_blocking("interop passphrase", &theirs));
        assert!(!verify_blocking("wrong", &theirs));
        // A hash with other parameters still verifies (the memory is resized for it).
        let older = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).unwrap())
            .hash_password(b"interop passphrase")
            .unwrap()
            .to_string();
        let mut memory = Memory::default();
        assert!(verify_with("interop passphrase", &older, &mut memory));
        assert!(verify_with("interop passphrase", &ours, &mut memory));
        assert!(!verify_with("x", "not a phc string", &mut memory));
    }

    #[test]
    fn the_dummy_hash_has_the_live_parameters() {
        assert!(DUMMY_HASH.starts_with(&format!("$argon2id$v=19$m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}$")));
        assert!(!verify_blocking("", DUMMY_HASH));
    }
}
