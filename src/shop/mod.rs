//! The shop: catalogue (categories, products, search), orders that never oversell, payments
//! with signed webhooks. See `docs/shop.md`.

/// `Display` for the enums stored as text: the stored value (which is also the wire value).
macro_rules! display_as_stored {
    ($($ty:ty),+ $(,)?) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&sea_orm::ActiveEnum::to_value(self))
            }
        }
    )+};
}

pub mod cache;
pub mod catalogue;
pub mod entity;
pub mod orders;
pub mod payments;

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;

use crate::{config::Config, state::AppState};

/// What the shop keeps in the application state.
pub struct ShopState {
    pub cache: Arc<cache::CatalogueCache>,
    pub provider: payments::Provider,
}

impl ShopState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            cache: cache::CatalogueCache::new(config.shop.cache_capacity, config.shop.cache_ttl),
            provider: payments::Provider::from_config(&config.shop)?,
        })
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(catalogue::router()).merge(orders::router()).merge(payments::router())
}

/// After a committed write that changes what the catalogue shows (a product, a category, or
/// stock taken or returned): drops cached pages here and on every other instance.
pub async fn catalogue_changed(state: &AppState) {
    state.shop.cache.invalidate(state.redis.as_ref()).await;
}

/// Background work: catalogue invalidations from other instances (with Redis), and pruning of
/// expired idempotency keys.
pub fn spawn_background(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(url) = state.config.redis_url.clone() {
        let cache = state.shop.cache.clone();
        tasks.push(crate::pubsub::subscribe(url, cache::CHANNEL, move |heard| match heard {
            // Writes published while we were not subscribed were missed: start over.
            crate::pubsub::Heard::Subscribed => cache.invalidate_local(),
            crate::pubsub::Heard::Message(payload) => cache.on_message(payload),
        }));
    }
    tasks
}
