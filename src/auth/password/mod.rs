//! Password hashing (argon2id with OWASP's parameters) and the password policy.
//!
//! Hashing is deliberately slow, so it runs on its own threads, one per CPU, fed from one
//! queue: a burst of logins queues there instead of starving the async runtime, and a hashing
//! thread goes from one hash straight to the next without waiting for the runtime to hand it
//! over.
//!
//! - `argon.rs`: the hash itself (OWASP's argon2id parameters, PHC strings);
//! - `memory.rs`: each hashing thread's working memory, on huge pages where granted;
//! - `policy.rs`: what a new password must be.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, mpsc},
};

mod argon;
mod memory;
mod policy;

pub use argon::{hash_blocking, verify_blocking};
pub use memory::Memory;
pub use policy::{MAX_LEN, MIN_LEN};

use argon::{DUMMY_HASH, hash_with, verify_with};

use crate::auth::PasswordError;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

/// Hashes and verifies passwords off the async threads.
pub struct Passwords {
    /// The hashing threads' queue; they end when it is dropped.
    jobs: mpsc::Sender<Job>,
}

/// A hash to compute on a hashing thread, with that thread's working memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

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

    /// Runs `work` on a hashing thread, with that thread's working memory. A request that is
    /// gone (its client hung up, or it timed out) before its turn comes costs no hash.
    async fn with_memory<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (answer, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            if !answer.is_closed() {
                let _ = answer.send(work(memory));
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| PasswordError::Hashing(anyhow::anyhow!("password hashing threads are gone")))?;
        result.await.map_err(|_| PasswordError::Hashing(anyhow::anyhow!("password hashing failed")))
    }

    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.with_memory(move |memory| hash_with(&password, memory)).await?.map_err(PasswordError::Hashing)
    }

    /// Verifies `password` against `hash`; with no hash (unknown user, or an account without a
    /// password) it still spends the same time and answers `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, PasswordError> {
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
            assert!(matches!(failed, Err(PasswordError::Hashing(_))), "{failed:?}");
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
}
