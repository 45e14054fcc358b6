//! Evaluation through the job queue: batches nothing watches enqueue nothing, one run takes on
//! every grower's queued evaluations but leaves those a worker has claimed to that worker, and a
//! rule created on one instance is watched at once by another through Redis.

use chrono::{Duration, Utc};
use mash::jobs::entity as job;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    NO_WORKERS,
    alerts::{alerts_of, new_rule},
    greenhouse::{bearer, create_device, greenhouse, greenhouse_by, post_batch, reading},
};

use super::{alert_events, app, base, changes, queued_jobs, send, watch};

#[tokio::test]
async fn batches_nothing_watches_enqueue_no_evaluation() {
    let app = app().await;
    let watched = greenhouse(&app).await;
    let quiet = greenhouse_by(&app, &watched.admin).await;
    let watched_dev = create_device(&app, &watched.owner, watched.grower_id, "watched").await;
    let quiet_dev = create_device(&app, &quiet.owner, quiet.grower_id, "quiet").await;
    new_rule(
        &app,
        &watched.owner,
        json!({"growerId": watched.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "info"}),
    )
    .await;
    // Whatever setup queued (mail), drained or not, is the baseline.
    app.run_jobs().await;
    let t0 = base();

    // A grower without rules: no job.
    let (evaluations, all) = queued_jobs(&app).await;
    assert_eq!(evaluations, 0);
    let batch = json!([reading(quiet_dev.id, "temp", 99.0, t0), reading(quiet_dev.id, "humidity", 1.0, t0)]);
    assert_eq!(post_batch(&app, &bearer(&quiet.owner), &batch).await.status(), 202);
    assert_eq!(queued_jobs(&app).await, (0, all), "a batch no rule watches enqueues nothing");

    // A metric no rule of the grower watches: no job either.
    let batch = json!([reading(watched_dev.id, "humidity", 99.0, t0)]);
    assert_eq!(post_batch(&app, &bearer(&watched.owner), &batch).await.status(), 202);
    assert_eq!(queued_jobs(&app).await, (0, all));

    // A watched reading: exactly one evaluation job.
    let batch = json!([reading(watched_dev.id, "temp", 20.0, t0), reading(watched_dev.id, "humidity", 1.0, t0)]);
    assert_eq!(post_batch(&app, &bearer(&watched.owner), &batch).await.status(), 202);
    assert_eq!(queued_jobs(&app).await, (1, all + 1));
    app.run_jobs().await;
    assert_eq!(queued_jobs(&app).await.0, 0);
    assert!(alerts_of(&app, &watched).await.is_empty());
    assert!(alerts_of(&app, &quiet).await.is_empty());
}

#[tokio::test]
async fn one_evaluation_run_takes_on_the_queued_evaluations_of_every_grower() {
    use mash::jobs::BackgroundJob;
    let app = app().await;
    let a = greenhouse(&app).await;
    let b = greenhouse_by(&app, &a.admin).await;
    let dev_a = create_device(&app, &a.owner, a.grower_id, "a").await;
    let dev_b = create_device(&app, &b.owner, b.grower_id, "b").await;
    for gh in [&a, &b] {
        new_rule(
            &app,
            &gh.owner,
            json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
                   "severity": "info"}),
        )
        .await;
    }
    app.run_jobs().await;
    let mut events_a = watch(&app, a.grower_id);
    let mut events_b = watch(&app, b.grower_id);
    let t0 = base();
    // Three batches, three evaluation jobs: two of grower A's device (overlapping by one
    // reading), one of grower B's.
    for (who, batch) in [
        (&a, json!([reading(dev_a.id, "temp", 31.0, t0), reading(dev_a.id, "temp", 32.0, t0 + Duration::seconds(1))])),
        (
            &a,
            json!([
                reading(dev_a.id, "temp", 32.0, t0 + Duration::seconds(1)),
                reading(dev_a.id, "temp", 35.0, t0 + Duration::seconds(2))
            ]),
        ),
        (&b, json!([reading(dev_b.id, "temp", 40.0, t0)])),
    ] {
        assert_eq!(post_batch(&app, &bearer(&who.owner), &batch).await.status(), 202);
    }
    // And one whose arguments do not parse: it is not taken, and fails on its own.
    let now = Utc::now();
    let bogus = Uuid::now_v7();
    job::Entity::insert(job::ActiveModel {
        id: sea_orm::Set(bogus),
        job_type: sea_orm::Set("evaluate_readings".into()),
        payload: sea_orm::Set(json!({"bogus": true})),
        priority: sea_orm::Set(0),
        status: sea_orm::Set(job::QUEUED.into()),
        attempts: sea_orm::Set(0),
        max_attempts: sea_orm::Set(1),
        run_at: sea_orm::Set(now),
        locked_until: sea_orm::Set(None),
        locked_by: sea_orm::Set(None),
        last_error: sea_orm::Set(None),
        created_at: sea_orm::Set(now),
        updated_at: sea_orm::Set(now),
    })
    .exec(&app.state.db)
    .await
    .unwrap();
    let queued = || async {
        job::Entity::find()
            .filter(job::Column::JobType.eq("evaluate_readings"))
            .filter(job::Column::Status.eq(job::QUEUED))
            .all(&app.state.db)
            .await
            .unwrap()
    };
    assert_eq!(queued().await.len(), 4);

    // One job is run by hand: it takes the other two valid ones with it.
    let first = queued().await.into_iter().find(|j| j.id != bogus).unwrap();
    let args: mash::alerts::evaluate::EvaluateReadings = serde_json::from_value(first.payload.clone()).unwrap();
    job::Entity::delete_by_id(first.id).exec(&app.state.db).await.unwrap();
    args.run(&app.state, mash::jobs::Run { id: first.id, attempt: 1 }).await.expect("the evaluation runs");
    let left: Vec<Uuid> = queued().await.into_iter().map(|j| j.id).collect();
    assert_eq!(left, vec![bogus], "the valid evaluations were done and removed in that run");

    let alerts_a = alerts_of(&app, &a).await;
    assert_eq!(alerts_a.len(), 1, "{alerts_a:?}");
    assert_eq!(alerts_a[0]["count"], 3, "three distinct breaching readings, the shared one counted once");
    assert_eq!(alerts_a[0]["value"], 35.0);
    let alerts_b = alerts_of(&app, &b).await;
    assert_eq!(alerts_b.len(), 1, "{alerts_b:?}");
    assert_eq!(alerts_b[0]["value"], 40.0);
    // Each grower's change is announced on its own path, after the publishing jobs run.
    app.run_jobs().await;
    assert_eq!(changes(&alert_events(&mut events_a, a.grower_id)), vec!["created"]);
    assert_eq!(changes(&alert_events(&mut events_b, b.grower_id)), vec!["created"]);
    let dead = job::Entity::find_by_id(bogus).one(&app.state.db).await.unwrap().expect("kept as a dead letter");
    assert_eq!(dead.status, job::DEAD);
}

#[tokio::test]
async fn a_run_leaves_evaluations_claimed_by_a_worker_to_that_worker() {
    use mash::jobs::BackgroundJob;
    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "info"}),
    )
    .await;
    app.run_jobs().await;
    let t0 = base();
    for (i, v) in [31.0, 32.0].into_iter().enumerate() {
        let batch = json!([reading(dev.id, "temp", v, t0 + Duration::seconds(i as i64))]);
        assert_eq!(post_batch(&app, &bearer(&gh.owner), &batch).await.status(), 202);
    }
    // A worker claims both (as its loop would, before running them).
    let worker = app.state.jobs.worker_id.clone();
    let lease = std::time::Duration::from_secs(60);
    let claimed =
        mash::jobs::queue::claim(&app.state.db, &["evaluate_readings"], &worker, Utc::now(), lease, 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let args = |j: &job::Model| -> mash::alerts::evaluate::EvaluateReadings {
        serde_json::from_value(j.payload.clone()).unwrap()
    };
    let run = |j: &job::Model| mash::jobs::Run { id: j.id, attempt: j.attempts };
    // The first runs, as the worker runs it: the claimed second is not taken from its worker.
    args(&claimed[0]).run(&app.state, run(&claimed[0])).await.unwrap();
    let second = job::Entity::find_by_id(claimed[1].id).one(&app.state.db).await.unwrap();
    assert_eq!(second.expect("a claimed job is its worker's").status, job::RUNNING);
    let alerts = alerts_of(&app, &gh).await;
    assert_eq!(alerts[0]["count"], 1, "{alerts:?}");
    // Its own run then evaluates its reading.
    args(&claimed[1]).run(&app.state, run(&claimed[1])).await.unwrap();
    let alerts = alerts_of(&app, &gh).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["count"], 2, "{alerts:?}");
    assert_eq!(alerts[0]["value"], 32.0);
}

#[tokio::test]
async fn a_rule_created_on_one_instance_is_watched_at_once_by_another_through_redis() {
    let (a, b, _dir) = crate::helpers::two_instances_on_redis(NO_WORKERS).await;
    let gh = greenhouse(&a).await;
    let dev = create_device(&a, &gh.owner, gh.grower_id, "sensor").await;
    // Instance b learns (and caches) that nothing watches this grower.
    send(&b, &gh.owner, vec![reading(dev.id, "temp", 10.0, base())]).await;
    assert_eq!(queued_jobs(&b).await.0, 0);
    new_rule(
        &a,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0, "severity": "warning"}),
    )
    .await;
    // The change reaches b through Redis (asynchronously: a few tries, each a new batch).
    let mut watched = false;
    for i in 1..=50 {
        let batch = json!([reading(dev.id, "temp", 40.0, base() + Duration::seconds(i))]);
        assert_eq!(post_batch(&b, &bearer(&gh.owner), &batch).await.status(), 202);
        if queued_jobs(&b).await.0 > 0 {
            watched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(watched, "instance b never evaluated the rule created on a");
    b.run_jobs().await;
    let open = alerts_of(&b, &gh).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["status"], "active");
}
