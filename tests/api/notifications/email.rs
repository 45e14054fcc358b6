//! Alert email: critical alerts mailed to each member.

use std::collections::BTreeSet;

use axum::Router;
use chrono::Duration;
use mash::jobs::entity as job;
use uuid::Uuid;

use crate::helpers::{
    accounts::{json_of, user_with_role},
    greenhouse::{add_member, create_device, greenhouse},
    spawn_app_with,
};

use super::{alert_on, create_rule, deliveries, jobs_of, post_readings, run_only, start_of_readings};

// ---------------------------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn critical_alerts_are_mailed_to_each_member() {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], Router::new()).await;
    let gh = greenhouse(&app).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.admin, gh.grower_id, member.id, "MEMBER").await, 201).await;
    user_with_role(&app, "outsider", "GROWER").await;
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;
    create_rule(&app, &gh.owner, gh.grower_id, "humidity", "warning").await;
    let t0 = start_of_readings();
    // The sign-up mail goes first, out of the way.
    app.run_jobs().await;
    assert!(jobs_of(&app, "send_email").await.is_empty());
    let sign_up_mails = deliveries(&app, "email").await.len();

    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, t0)]).await;
    assert_eq!(run_only(&app, &["evaluate_readings"]).await, 1);
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();

    // One send_email job per member, about this alert.
    let mails = jobs_of(&app, "send_email").await;
    let to: BTreeSet<String> = mails.iter().map(|j| j.payload["to"].as_str().unwrap().to_string()).collect();
    assert_eq!(to, BTreeSet::from([gh.owner.email.clone(), member.email.clone()]), "{mails:?}");
    for j in &mails {
        assert_eq!(j.status, job::QUEUED);
        assert_eq!(j.payload["alert_id"], alert["id"], "{:?}", j.payload);
        assert!(j.payload["subject"].as_str().is_some_and(|s| s.contains("temp")), "{:?}", j.payload);
        assert!(j.payload["body"].as_str().is_some_and(|b| b.contains(&alert_id.to_string())), "{:?}", j.payload);
    }

    // Without SMTP_URL the mail is logged, and each one recorded against the alert.
    app.run_jobs().await;
    assert!(jobs_of(&app, "send_email").await.is_empty());
    let emails = deliveries(&app, "email").await.split_off(sign_up_mails);
    let targets: BTreeSet<String> = emails.iter().map(|d| d.target.clone()).collect();
    assert_eq!(targets, to, "{emails:?}");
    for d in &emails {
        assert_eq!(d.status, "logged", "{d:?}");
        assert_eq!(d.alert_id, Some(alert_id));
        assert_eq!(d.attempt, 1);
    }

    // A warning alert is not mailed.
    post_readings(&app, &gh.owner, &sensor, "humidity", &[(90.0, t0 + Duration::seconds(1))]).await;
    app.run_jobs().await;
    alert_on(&app, &gh, &sensor, "humidity").await;
    assert_eq!(deliveries(&app, "email").await.len(), sign_up_mails + 2);
}
