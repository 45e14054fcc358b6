//! Cross-instance messages over Redis pub/sub, for caches that must hear about writes made by
//! other instances (revoked sessions, catalogue changes). Best effort by nature: every user of
//! it has a backstop (a periodic database read, a TTL) for a message that is lost while Redis
//! or the subscription is down.

use std::time::Duration;

use futures_util::StreamExt;

/// Publishes `payload` on `channel`. A failure is logged, not returned: the caller's own write
/// has committed, and the receivers' backstop covers the lost message.
pub async fn publish(redis: &crate::state::Redis, channel: &str, payload: &str) {
    let result = async {
        let mut conn = redis.conn().await?;
        redis::cmd("PUBLISH").arg(channel).arg(payload).query_async::<i64>(&mut conn).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, channel, "could not publish to Redis; other instances rely on their backstop");
    }
}

/// What a subscriber hears.
pub enum Heard<'a> {
    /// The subscription is (re)established. Messages published before this moment were not
    /// received: a cache drops what it holds here.
    Subscribed,
    Message(&'a str),
}

/// Subscribes to `channel` for the life of the process, calling `on_event` when the
/// subscription is made and with each payload. The subscription is re-made with backoff
/// whenever it drops.
pub fn subscribe(
    url: crate::config::Secret,
    channel: &'static str,
    on_event: impl Fn(Heard<'_>) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match listen(url.expose(), channel, &on_event).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(error = %e, channel, retry_in_ms = backoff.as_millis() as u64, "Redis subscription lost");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    })
}

async fn listen(url: &str, channel: &str, on_event: &(impl Fn(Heard<'_>) + Send + Sync)) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    on_event(Heard::Subscribed);
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        if let Ok(payload) = msg.get_payload::<String>() {
            on_event(Heard::Message(&payload));
        }
    }
    Ok(())
}
