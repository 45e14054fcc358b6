//! Outgoing mail through a transactional outbox: a row is written in the same transaction as
//! the change it is about, and a background task delivers it over SMTP (lettre) when
//! `SMTP_URL` is set, or writes it to the log (with its links) when not. Failed deliveries are
//! retried with exponential backoff; several instances never send one row twice (a row is
//! leased with a conditional update before it is sent).

use std::time::Duration;

use chrono::Utc;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{auth::entity::email_outbox, state::AppState};

const MAX_ATTEMPTS: i32 = 10;
const LEASE: chrono::Duration = chrono::Duration::minutes(5);
const BATCH: u64 = 20;

/// One message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Queues a message inside the caller's transaction.
pub async fn enqueue<C: ConnectionTrait>(db: &C, mail: Mail) -> Result<Uuid, sea_orm::DbErr> {
    let id = Uuid::now_v7();
    let now = Utc::now();
    email_outbox::Entity::insert(email_outbox::ActiveModel {
        id: Set(id),
        to_address: Set(mail.to),
        subject: Set(mail.subject),
        body_text: Set(mail.body),
        attempts: Set(0),
        last_error: Set(None),
        next_attempt_at: Set(now),
        sent_at: Set(None),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(id)
}

/// Where mail goes.
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
}

impl Transport {
    pub fn from_state(state: &AppState) -> anyhow::Result<Self> {
        match &state.config.smtp_url {
            Some(url) => Ok(Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| anyhow::anyhow!("invalid configuration: SMTP_URL: {e}"))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            )),
            None => Ok(Transport::Log),
        }
    }

    async fn send(&self, from: &str, row: &email_outbox::Model) -> anyhow::Result<()> {
        match self {
            Transport::Log => {
                tracing::info!(to = %row.to_address, subject = %row.subject, body = %row.body_text, "mail (no SMTP_URL configured; logged instead of sent)");
                Ok(())
            }
            Transport::Smtp(smtp) => {
                let message = Message::builder()
                    .from(from.parse()?)
                    .to(row.to_address.parse()?)
                    .subject(row.subject.clone())
                    .message_id(Some(format!("<{}@mash>", row.id)))
                    .body(row.body_text.clone())?;
                smtp.send(message).await?;
                Ok(())
            }
        }
    }
}

/// Delivers what is due now. Returns how many messages were sent. Tests call this directly.
pub async fn deliver_due(state: &AppState, transport: &Transport) -> Result<usize, sea_orm::DbErr> {
    let now = Utc::now();
    let due = email_outbox::Entity::find()
        .filter(email_outbox::Column::SentAt.is_null())
        .filter(email_outbox::Column::NextAttemptAt.lte(now))
        .filter(email_outbox::Column::Attempts.lt(MAX_ATTEMPTS))
        .order_by_asc(email_outbox::Column::NextAttemptAt)
        .limit(BATCH)
        .all(&state.db)
        .await?;
    let mut sent = 0;
    for row in due {
        // Lease the row: only the instance whose conditional update lands sends it.
        let leased = email_outbox::Entity::update_many()
            .col_expr(email_outbox::Column::NextAttemptAt, Expr::value(now + LEASE))
            .filter(email_outbox::Column::Id.eq(row.id))
            .filter(email_outbox::Column::SentAt.is_null())
            .filter(email_outbox::Column::NextAttemptAt.eq(row.next_attempt_at))
            .exec(&state.db)
            .await?;
        if leased.rows_affected != 1 {
            continue;
        }
        match transport.send(&state.config.mail_from, &row).await {
            Ok(()) => {
                email_outbox::Entity::update_many()
                    .col_expr(email_outbox::Column::SentAt, Expr::value(Utc::now()))
                    .col_expr(email_outbox::Column::Attempts, Expr::value(row.attempts + 1))
                    .filter(email_outbox::Column::Id.eq(row.id))
                    .exec(&state.db)
                    .await?;
                sent += 1;
            }
            Err(e) => {
                let attempts = row.attempts + 1;
                let backoff = chrono::Duration::seconds(2i64.pow(attempts.min(12) as u32).min(3600));
                tracing::warn!(mail_id = %row.id, attempts, error = %e, "mail delivery failed");
                email_outbox::Entity::update_many()
                    .col_expr(email_outbox::Column::Attempts, Expr::value(attempts))
                    .col_expr(email_outbox::Column::LastError, Expr::value(e.to_string()))
                    .col_expr(email_outbox::Column::NextAttemptAt, Expr::value(Utc::now() + backoff))
                    .filter(email_outbox::Column::Id.eq(row.id))
                    .exec(&state.db)
                    .await?;
            }
        }
    }
    Ok(sent)
}

/// The delivery loop: every two seconds, or at once when something is queued.
pub fn spawn_delivery(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let transport = match Transport::from_state(&state) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "mail delivery disabled");
                return;
            }
        };
        loop {
            tokio::select! {
                () = state.mail_queued.notified() => {},
                () = tokio::time::sleep(Duration::from_secs(2)) => {},
            }
            if let Err(e) = deliver_due(&state, &transport).await {
                tracing::warn!(error = %e, "mail outbox unavailable");
            }
        }
    })
}
