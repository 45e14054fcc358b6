//! Prometheus metrics, kept in a registry owned by the application state (no globals, so
//! several applications in one test process each count their own).

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of the HTTP metrics. `route` is the route *template* (`/api/v1/devices/{id}`), never
/// the raw path, so per-id requests do not create a series each.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

/// Every metric the process exports. Domain modules add theirs here.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<HttpLabels>,
    pub http_in_flight: Gauge,
    /// Readings stored, by source (`http`, `mqtt`).
    pub telemetry_ingested: Family<SourceLabels, Counter>,
    /// Readings that were already stored (resent), by source.
    pub telemetry_duplicates: Family<SourceLabels, Counter>,
    /// Batches or MQTT messages refused, by source and reason.
    pub telemetry_rejected: Family<RejectLabels, Counter>,
    /// Orders placed.
    pub orders_created: Counter,
    /// Payment webhook events, by provider and outcome (`applied`, `duplicate`, `ignored`, `bad_signature`).
    pub payment_webhooks: Family<WebhookLabels, Counter>,
}

/// A payment webhook's provider and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: &'static str,
    pub outcome: &'static str,
}

/// Where telemetry came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

/// Why telemetry was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub source: &'static str,
    pub reason: &'static str,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<HttpLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response head, by method, route template and status",
            http_duration.clone(),
        );
        let http_in_flight = Gauge::default();
        registry.register("http_requests_in_flight", "HTTP requests being handled now", http_in_flight.clone());
        let build_info = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        build_info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))]).set(1);
        registry.register("mash_build", "Build information", build_info);
        let telemetry_ingested = Family::<SourceLabels, Counter>::default();
        registry.register(
            "telemetry_readings_ingested",
            "Sensor readings stored, by source",
            telemetry_ingested.clone(),
        );
        let telemetry_duplicates = Family::<SourceLabels, Counter>::default();
        registry.register(
            "telemetry_readings_duplicate",
            "Sensor readings received again and not stored twice, by source",
            telemetry_duplicates.clone(),
        );
        let telemetry_rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "telemetry_rejected",
            "Telemetry batches or MQTT messages refused, by source and reason",
            telemetry_rejected.clone(),
        );
        let orders_created = Counter::default();
        registry.register("shop_orders_created", "Orders placed", orders_created.clone());
        let payment_webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "payment_webhook_events",
            "Payment webhook events received, by provider and outcome",
            payment_webhooks.clone(),
        );
        Arc::new(Self {
            orders_created,
            payment_webhooks,
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            telemetry_ingested,
            telemetry_duplicates,
            telemetry_rejected,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
