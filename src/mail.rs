//! Outgoing mail, as `send_email` jobs on the job queue: enqueued in the same transaction as
//! the change it is about, delivered over SMTP (lettre) when `SMTP_URL` is set, or written to
//! the log (with its links) when not. Failed deliveries are retried with the queue's backoff;
//! every attempt is recorded in `notification_deliveries`.

use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    alerts::{
        delivery::record_delivery,
        entity::{Channel, DeliveryStatus},
    },
    config::Config,
    jobs::BackgroundJob,
    state::AppState,
};

/// One message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Queues a message inside the caller's transaction. Call `state.jobs.wake()` after commit.
pub async fn enqueue<C: ConnectionTrait>(db: &C, mail: Mail) -> Result<Uuid, sea_orm::DbErr> {
    crate::jobs::enqueue(db, &SendEmail { to: mail.to, subject: mail.subject, body: mail.body, alert_id: None }).await
}

/// The `send_email` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendEmail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// The alert this mail is about, for the delivery log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<Uuid>,
}

impl BackgroundJob for SendEmail {
    const NAME: &'static str = "send_email";
    const MAX_ATTEMPTS: i32 = 10;
    const TIMEOUT: Duration = Duration::from_secs(60);

    async fn run(&self, state: &AppState, run: crate::jobs::Run) -> anyhow::Result<()> {
        let result = state.mailer.send(&state.config.mail_from, self).await;
        let status = match (&result, &state.mailer) {
            (Ok(()), Transport::Log) => DeliveryStatus::Logged,
            (Ok(()), Transport::Smtp(_)) => DeliveryStatus::Sent,
            (Err(_), _) => DeliveryStatus::Failed,
        };
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        record_delivery(state, run.attempt, self.alert_id, Channel::Email, &self.to, status, error.as_deref()).await;
        result
    }
}

/// Where mail goes.
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
}

impl Transport {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        match &config.smtp_url {
            Some(url) => Ok(Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| anyhow::anyhow!("invalid configuration: SMTP_URL: {e}"))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            )),
            None => Ok(Transport::Log),
        }
    }

    async fn send(&self, from: &str, mail: &SendEmail) -> anyhow::Result<()> {
        match self {
            Transport::Log => {
                tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.body, "mail (no SMTP_URL configured; logged instead of sent)");
                Ok(())
            }
            Transport::Smtp(smtp) => {
                let message = Message::builder()
                    .from(from.parse()?)
                    .to(mail.to.parse().map_err(|e| crate::jobs::Permanent(format!("bad recipient: {e}")))?)
                    .subject(mail.subject.clone())
                    .body(mail.body.clone())?;
                smtp.send(message).await?;
                Ok(())
            }
        }
    }
}
