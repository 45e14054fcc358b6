//! The job queue: transactional enqueue, retries and dead letters, lease recovery, exclusive claims,
//! schedules across instances, and `GET /admin/jobs`.
//!
//! Every app here runs with `JOB_CONCURRENCY=0` (no worker, no scheduler, no gauge task) unless
//! a test is about those: the test drives the queue itself with `run_jobs`, `claim` and `tick`,
//! and moves time with the app's clock.

mod admin;
mod leases;
mod queue;
mod schedules;

use chrono::{DateTime, Utc};
use mash::{
    alerts::entity::delivery,
    jobs::entity::{self as job_row, QUEUED},
    mail::SendEmail,
};
use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, alerts::deliveries_by};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const JOBS: &str = "/api/v1/admin/jobs";

fn mail(to: &str) -> SendEmail {
    SendEmail {
        to: to.to_string(),
        subject: "Your seedlings are ready".into(),
        body: "Come and pick them up.".into(),
        alert_id: None,
    }
}

async fn job(app: &TestApp, id: Uuid) -> Option<job_row::Model> {
    job_row::Entity::find_by_id(id).one(&app.state.db).await.expect("job query")
}

async fn job_count(app: &TestApp) -> u64 {
    job_row::Entity::find().count(&app.state.db).await.expect("job count")
}

/// Registering an account queues a verification mail; tests that count jobs start from an
/// empty queue once their accounts exist.
async fn clear_queue(app: &TestApp) {
    job_row::Entity::delete_many().exec(&app.state.db).await.expect("clear the queue");
}

/// Email delivery attempts recorded for `to`, oldest first.
async fn deliveries_to(app: &TestApp, to: &str) -> Vec<delivery::Model> {
    deliveries_by(app, delivery::Column::Target, to).await
}

/// Inserts a `send_email` job whose arguments do not parse (as an older or newer binary, or a
/// hand-edited row, could leave behind).
async fn insert_unparseable_mail(app: &TestApp) -> Uuid {
    let id = Uuid::now_v7();
    let now = app.state.clock.now();
    job_row::Entity::insert(job_row::ActiveModel {
        id: Set(id),
        job_type: Set("send_email".into()),
        payload: Set(json!({"oops": 1})),
        priority: Set(0),
        status: Set(QUEUED.into()),
        attempts: Set(0),
        max_attempts: Set(10),
        run_at: Set(now),
        locked_until: Set(None),
        locked_by: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&app.state.db)
    .await
    .expect("insert a job row");
    id
}

/// A TCP port on loopback that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

fn assert_close(got: DateTime<Utc>, want: DateTime<Utc>) {
    assert!((got - want).num_microseconds().unwrap().abs() <= 1000, "got {got}, want {want}");
}
