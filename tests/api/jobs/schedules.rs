//! Periodic jobs: two instances enqueue each round once.

use std::collections::HashMap;

use mash::jobs::{
    entity::{self as job_row},
    schedule,
};
use sea_orm::EntityTrait;

use crate::helpers::{NO_WORKERS, TestApp, quiet_app};

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

/// How many jobs of each type are in the queue.
async fn jobs_by_type(app: &TestApp) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in job_row::Entity::find().all(&app.state.db).await.unwrap() {
        *out.entry(r.job_type).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_enqueue_each_round_of_a_periodic_job_once() {
    let a = quiet_app(&[]).await;
    let b = a.spawn_sibling(NO_WORKERS).await;
    let periodic_a = schedule::periodic(&a.state);
    let periodic_b = schedule::periodic(&b.state);
    let mut names: Vec<&str> = periodic_a.iter().map(|p| p.name).collect();
    names.sort_unstable();
    assert!(!names.is_empty());
    let longest = periodic_a.iter().map(|p| p.every).max().unwrap();

    let (ra, rb) = tokio::join!(
        schedule::register(&a.state.db, &periodic_a, a.state.clock.now()),
        schedule::register(&b.state.db, &periodic_b, b.state.clock.now()),
    );
    ra.expect("register on a");
    rb.expect("register on b");
    let schedules = job_row::schedule::Entity::find().all(&a.state.db).await.unwrap();
    assert_eq!(schedules.len(), names.len(), "{schedules:?}");

    for round in 1..=2 {
        if round > 1 {
            // Next round: past the longest interval on both instances.
            let by = chrono::Duration::from_std(longest).unwrap() + chrono::Duration::minutes(1);
            a.state.clock.advance(by);
            b.state.clock.advance(by);
        }
        let (ta, tb) = tokio::join!(schedule::tick(&a.state, &periodic_a), schedule::tick(&b.state, &periodic_b));
        let (ta, tb) = (ta.expect("tick on a"), tb.expect("tick on b"));
        let mut both: Vec<&str> = ta.iter().chain(tb.iter()).copied().collect();
        both.sort_unstable();
        assert_eq!(both, names, "round {round}: a enqueued {ta:?}, b enqueued {tb:?}");
        let want: HashMap<String, usize> = names.iter().map(|n| (n.to_string(), round)).collect();
        assert_eq!(jobs_by_type(&a).await, want, "round {round}");

        // The round is taken: ticking again (on either instance) enqueues nothing.
        let (ta, tb) = tokio::join!(schedule::tick(&a.state, &periodic_a), schedule::tick(&b.state, &periodic_b));
        assert_eq!((ta.unwrap(), tb.unwrap()), (vec![], vec![]), "round {round} enqueued twice");
        assert_eq!(jobs_by_type(&a).await, want, "round {round}");
    }
    // Registering again (a restart) keeps the schedule: nothing is due before its time.
    schedule::register(&b.state.db, &periodic_b, b.state.clock.now()).await.expect("register again");
    let (ta, tb) = tokio::join!(schedule::tick(&a.state, &periodic_a), schedule::tick(&b.state, &periodic_b));
    assert_eq!((ta.unwrap(), tb.unwrap()), (vec![], vec![]), "registering again made a round due");
    let later = job_row::schedule::Entity::find().all(&a.state.db).await.unwrap();
    assert!(later.iter().all(|s| s.last_run_at.is_some() && s.next_run_at > a.state.clock.now()), "{later:?}");
}
