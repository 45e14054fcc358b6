//! The queue's statements, one file per step of a job's life: [`claim`] (and a run taking on
//! queued jobs of its type), [`finish`] (success, failure, expired leases), [`counts`].

mod claim;
mod counts;
mod finish;

pub use claim::{claim, claim_leased, due, remove_taken};
pub use counts::{Counts, counts};
pub use finish::{Failed, backoff, complete, complete_many, fail, recover_expired};
