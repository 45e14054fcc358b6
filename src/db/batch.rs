//! Point reads batched across requests, as Prisma's dataloader batches `findUnique` calls.
//!
//! - A read that arrives while fewer than `max_in_flight` queries are running goes to the
//!   database at once, alone, from its own task: at low load nothing waits or changes hands.
//! - A read that arrives while that many are running joins the next batch. It starts as soon as
//!   one of them finishes, from a task of its own, and carries every read waiting by then (up to
//!   `max_batch` keys, each once) in one query.
//! - Every read is answered by a query sent *after* it arrived. So it sees every write committed
//!   before it was made (read-your-writes holds as for an unbatched read), and a read never takes
//!   the answer of a batch already on its way.
//!
//! Under load this turns a query per request into a query per batch: one pool acquire, one
//! round trip and one release for many requests. It also caps the connections these reads can
//! hold at `max_in_flight`, so a storm of them cannot starve the rest of the API of the pool.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
};

use futures_util::{FutureExt, future::BoxFuture};
use prometheus_client::metrics::counter::Counter;
use sea_orm::DbErr;
use tokio::sync::oneshot;

use crate::http::AppError;

/// What a batch query returns: the value of each key found (a missing key is `None`).
pub type Loaded<K, V> = Result<HashMap<K, V>, DbErr>;

/// The batch query: all the keys of one batch, each once.
pub type Load<K, V> = Arc<dyn Fn(Vec<K>) -> BoxFuture<'static, Loaded<K, V>> + Send + Sync>;

type Answer<V> = Result<Option<V>, Arc<DbErr>>;

/// Batched point reads of `V` by `K`. Cheap to clone; clones share the batches.
pub struct Batched<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for Batched<K, V> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

struct Shared<K, V> {
    state: Mutex<State<K, V>>,
    load: Load<K, V>,
    max_in_flight: usize,
    max_batch: usize,
    counts: Counts,
}

/// What a [`Batched`] counts: reads answered, and the queries that answered them.
#[derive(Clone, Default)]
pub struct Counts {
    pub reads: Counter,
    pub queries: Counter,
}

struct State<K, V> {
    waiting: Vec<(K, oneshot::Sender<Answer<V>>)>,
    running: usize,
}

impl<K, V> Batched<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// At most `max_in_flight` batches run at once, each of at most `max_batch` keys (both at
    /// least 1).
    pub fn new(max_in_flight: usize, max_batch: usize, load: Load<K, V>, counts: Counts) -> Self {
        let state = Mutex::new(State { waiting: Vec::new(), running: 0 });
        let (max_in_flight, max_batch) = (max_in_flight.max(1), max_batch.max(1));
        Self { shared: Arc::new(Shared { state, load, max_in_flight, max_batch, counts }) }
    }

    /// The value of `key`, read by a query sent after this call. A failed batch fails each of
    /// its reads the way the error would fail one read (503 for an outage).
    pub async fn get(&self, key: K) -> Result<Option<V>, AppError> {
        let (reply, answer) = oneshot::channel();
        // Nobody waits while a slot is free (see `Slot`), so a read that finds one goes alone,
        // in its own task: no hand-over at low load.
        let alone = {
            let mut state = lock(&self.shared.state);
            let alone = state.running < self.shared.max_in_flight;
            if alone {
                state.running += 1;
            } else {
                state.waiting.push((key.clone(), reply));
            }
            alone
        };
        if alone {
            self.shared.counts.reads.inc();
            let slot = Slot(&self.shared);
            let loaded = load(&self.shared, vec![key.clone()]).await;
            drop(slot);
            return loaded.map(|mut found| found.remove(&key)).map_err(crate::db::error::classify);
        }
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(crate::db::error::classify_shared(&e)),
            Err(_) => Err(AppError::Internal(anyhow::anyhow!("a batched read ended without an answer"))),
        }
    }
}

/// A running slot held by a read that went alone. Given back when its query ends, or when the
/// read is dropped mid-query (a client hanging up). If reads queued behind it meanwhile, the slot
/// passes to a new task that runs their batches ([`run`]), so they never wait on a caller that
/// is gone; otherwise it is freed. Either way the queue is empty whenever a slot is free.
struct Slot<'a, K, V>(&'a Arc<Shared<K, V>>)
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static;

impl<K, V> Drop for Slot<'_, K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        if state.waiting.is_empty() {
            state.running -= 1;
        } else {
            drop(state);
            tokio::spawn(run(self.0.clone()));
        }
    }
}

/// One query for `keys` (each once), counted; a panic in it is an error like any other.
async fn load<K, V>(shared: &Shared<K, V>, keys: Vec<K>) -> Loaded<K, V> {
    shared.counts.queries.inc();
    AssertUnwindSafe((shared.load)(keys))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(DbErr::Custom("a batched read panicked".into())))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding it; should anything, the queue is still consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs batches, in a task of its own, until nobody is waiting: a caller that goes away cannot
/// take the reads of others down with it. The slot is freed under the same lock that saw the
/// queue empty, so a read queued meanwhile is never left without a runner.
async fn run<K, V>(shared: Arc<Shared<K, V>>)
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    loop {
        let batch: Vec<_> = {
            let mut state = lock(&shared.state);
            if state.waiting.is_empty() {
                state.running -= 1;
                return;
            }
            let take = state.waiting.len().min(shared.max_batch);
            state.waiting.drain(..take).collect()
        };
        shared.counts.reads.inc_by(batch.len() as u64);
        let mut seen = HashSet::with_capacity(batch.len());
        let keys: Vec<K> = batch.iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, _)| k.clone()).collect();
        let loaded = load(&shared, keys).await;
        match loaded {
            Ok(found) => {
                for (key, reply) in batch {
                    let _ = reply.send(Ok(found.get(&key).cloned()));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for (_, reply) in batch {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use tokio::sync::Semaphore;

    use super::*;

    type Seen = Arc<StdMutex<Vec<Vec<u32>>>>;

    /// A load that records its batches and answers `key * 10` for keys below 100, once the test
    /// lets it (one permit per batch).
    fn gated() -> (Load<u32, u32>, Seen, Arc<Semaphore>) {
        let batches = Arc::new(StdMutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let (seen, open) = (batches.clone(), gate.clone());
        let load: Load<u32, u32> = Arc::new(move |keys: Vec<u32>| {
            seen.lock().unwrap().push(keys.clone());
            let open = open.clone();
            async move {
                open.acquire().await.unwrap().forget();
                Ok(keys.into_iter().filter(|k| *k < 100).map(|k| (k, k * 10)).collect())
            }
            .boxed()
        });
        (load, batches, gate)
    }

    /// `reads.get(key)` in a task of its own (as a request would run it).
    fn spawn_get(reads: &Batched<u32, u32>, key: u32) -> tokio::task::JoinHandle<Option<u32>> {
        let reads = reads.clone();
        tokio::spawn(async move { reads.get(key).await.unwrap() })
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..1000 {
            if what() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition never held");
    }

    #[tokio::test]
    async fn reads_waiting_behind_a_running_batch_go_together_in_the_next_one() {
        let (load, batches, gate) = gated();
        let reads = Batched::new(1, 64, load, Counts::default());
        let first = spawn_get(&reads, 1);
        until(|| batches.lock().unwrap().len() == 1).await;
        // Key 1 again: it must not take the answer of the batch already on its way.
        let later: Vec<_> = [2, 1, 2, 500].into_iter().map(|k| spawn_get(&reads, k)).collect();
        until(|| lock(&reads.shared.state).waiting.len() == 4).await;
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Some(10));
        let mut answers = Vec::new();
        for read in later {
            answers.push(read.await.unwrap());
        }
        assert_eq!(answers, [Some(20), Some(10), Some(20), None]);
        assert_eq!(*batches.lock().unwrap(), [vec![1], vec![2, 1, 500]], "each key once per batch");
        assert_eq!(lock(&reads.shared.state).running, 0);
    }

    #[tokio::test]
    async fn reads_queued_behind_a_caller_that_hangs_up_are_still_answered() {
        let (load, batches, gate) = gated();
        let reads = Batched::new(1, 64, load, Counts::default());
        let first = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get(1).await }
        });
        until(|| batches.lock().unwrap().len() == 1).await;
        let later: Vec<_> = [2, 3].into_iter().map(|k| spawn_get(&reads, k)).collect();
        until(|| lock(&reads.shared.state).waiting.len() == 2).await;
        // The client of the read holding the only slot goes away mid-query.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        gate.add_permits(1);
        let mut answers = Vec::new();
        for read in later {
            answers.push(read.await.unwrap());
        }
        assert_eq!(answers, [Some(20), Some(30)]);
        assert_eq!(*batches.lock().unwrap(), [vec![1], vec![2, 3]]);
        assert_eq!(lock(&reads.shared.state).running, 0, "the slot is free again");
    }

    #[tokio::test]
    async fn a_read_does_not_wait_while_fewer_batches_than_the_limit_run() {
        let (load, batches, gate) = gated();
        let reads = Batched::new(3, 64, load, Counts::default());
        let mut all = Vec::new();
        for k in [1, 2, 3] {
            all.push(spawn_get(&reads, k));
            // Its query is sent while the earlier ones are still unanswered.
            until(|| batches.lock().unwrap().len() == k as usize).await;
        }
        gate.add_permits(3);
        for (read, k) in all.into_iter().zip([1, 2, 3]) {
            assert_eq!(read.await.unwrap(), Some(k * 10));
        }
        assert_eq!(*batches.lock().unwrap(), [vec![1], vec![2], vec![3]]);
    }

    #[tokio::test]
    async fn a_batch_is_cut_at_its_size_limit() {
        let (load, batches, gate) = gated();
        let reads = Batched::new(1, 2, load, Counts::default());
        let all: Vec<_> = [1, 2, 3, 4, 5].into_iter().map(|k| spawn_get(&reads, k)).collect();
        gate.add_permits(10);
        for (read, k) in all.into_iter().zip(1..) {
            assert_eq!(read.await.unwrap(), Some(k * 10));
        }
        assert!(batches.lock().unwrap().iter().all(|b| b.len() <= 2), "{:?}", batches.lock().unwrap());
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_read_as_the_error_would_fail_one() {
        let load: Load<u32, u32> =
            Arc::new(|_| async { Err(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)) }.boxed());
        let reads = Batched::new(1, 64, load, Counts::default());
        let (a, b) = tokio::join!(reads.get(1), reads.get(2));
        for answer in [a, b] {
            assert!(matches!(answer, Err(AppError::Unavailable(_))), "{answer:?}");
        }
        // A panicking query is a 500 for its reads, and the next read still gets a batch.
        let load: Load<u32, u32> = Arc::new(|keys| {
            async move {
                assert!(keys != [7], "boom");
                Ok(keys.into_iter().map(|k| (k, k)).collect())
            }
            .boxed()
        });
        let reads = Batched::new(1, 64, load, Counts::default());
        assert!(matches!(reads.get(7).await, Err(AppError::Internal(_))));
        assert_eq!(reads.get(8).await.unwrap(), Some(8));
    }
}
