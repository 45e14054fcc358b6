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
    /// Time from a job becoming due to a worker starting it, by job type.
    pub job_wait: HistogramFamily<JobLabels>,
    /// Time a run took, by job type.
    pub job_duration: HistogramFamily<JobLabels>,
    /// Runs finished, by job type and outcome (`success`, `retry`, `dead`).
    pub jobs_finished: Family<JobOutcome, Counter>,
    /// Queue gauges by job type, refreshed every few seconds.
    pub jobs_queued: Family<JobTypeLabels, Gauge>,
    pub jobs_running: Family<JobTypeLabels, Gauge>,
    pub jobs_failed: Family<JobTypeLabels, Gauge>,
    pub jobs_dead: Family<JobTypeLabels, Gauge>,
    /// Every queued job, all types.
    pub job_queue_depth: Gauge,
    /// Alert changes, by kind of change.
    pub alert_changes: Family<ChangeLabels, Counter>,
    /// From the 202 of the telemetry batch that caused an alert change to its realtime event.
    pub alert_event_latency: Histogram,
    /// Notification attempts, by channel and status.
    pub notifications: Family<NotificationLabels, Counter>,
    /// Open realtime connections, by transport (`ws`, `sse`).
    pub realtime_connections: Family<TransportLabels, Gauge>,
    /// Subscriptions held by this process's connections.
    pub realtime_subscriptions: Gauge,
    /// Events published (in process: to an active path; with Redis: handed to the publisher).
    pub realtime_events_published: Counter,
    /// Events dropped because the Redis publishing queue was full.
    pub realtime_events_dropped: Counter,
    /// Messages written to realtime connections.
    pub realtime_messages_sent: Counter,
    /// Connections closed, by reason.
    pub realtime_disconnects: Family<ReasonLabels, Counter>,
    /// Point reads answered through batches (`db::batch`), by read.
    pub db_batched_reads: Family<ReadLabels, Counter>,
    /// The queries that answered them, by read: reads ÷ queries is the mean batch size.
    pub db_batch_queries: Family<ReadLabels, Counter>,
}

/// A batched point read (`user_views`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    pub read: &'static str,
}

/// A realtime transport.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

/// Why a realtime connection ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// A job type (static: the registry's names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: &'static str,
}

/// A job type read back from the database.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobTypeLabels {
    pub job: String,
}

/// A finished run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobOutcome {
    pub job: &'static str,
    pub outcome: &'static str,
}

/// An alert change (`created`, `updated`, `acknowledged`, `resolved`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    pub change: &'static str,
}

/// A notification attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub channel: &'static str,
    pub status: &'static str,
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
        let job_wait: HistogramFamily<JobLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "job_wait_seconds",
            "Time from a job becoming due to its start, by job type",
            job_wait.clone(),
        );
        let job_duration: HistogramFamily<JobLabels> = Family::new_with_constructor(latency_histogram);
        registry.register("job_duration_seconds", "Time a job run took, by job type", job_duration.clone());
        let jobs_finished = Family::<JobOutcome, Counter>::default();
        registry.register("jobs_finished", "Job runs finished, by job type and outcome", jobs_finished.clone());
        let jobs_queued = Family::<JobTypeLabels, Gauge>::default();
        registry.register("jobs_queued", "Jobs waiting to run (retries included), by job type", jobs_queued.clone());
        let jobs_running = Family::<JobTypeLabels, Gauge>::default();
        registry.register("jobs_running", "Jobs leased to a worker, by job type", jobs_running.clone());
        let jobs_failed = Family::<JobTypeLabels, Gauge>::default();
        registry.register("jobs_failed", "Jobs queued again after a failed attempt, by job type", jobs_failed.clone());
        let jobs_dead = Family::<JobTypeLabels, Gauge>::default();
        registry.register("jobs_dead", "Dead-lettered jobs, by job type", jobs_dead.clone());
        let job_queue_depth = Gauge::default();
        registry.register("job_queue_depth", "Jobs waiting to run, all types", job_queue_depth.clone());
        let alert_changes = Family::<ChangeLabels, Counter>::default();
        registry.register("alert_changes", "Alert changes, by change", alert_changes.clone());
        // Finer than the HTTP buckets: the target is p99 under 200 ms.
        let alert_event_latency = Histogram::new([
            0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0,
            2.0, 5.0,
        ]);
        registry.register(
            "alert_event_latency_seconds",
            "From the 202 of the telemetry batch behind an alert change to its realtime event",
            alert_event_latency.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register("notifications", "Notification attempts, by channel and status", notifications.clone());
        let realtime_connections = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "realtime_connections",
            "Open realtime connections, by transport",
            realtime_connections.clone(),
        );
        let realtime_subscriptions = Gauge::default();
        registry.register("realtime_subscriptions", "Realtime subscriptions held here", realtime_subscriptions.clone());
        let realtime_events_published = Counter::default();
        registry.register("realtime_events_published", "Realtime events published", realtime_events_published.clone());
        let realtime_events_dropped = Counter::default();
        registry.register(
            "realtime_events_dropped",
            "Realtime events dropped because the Redis publishing queue was full",
            realtime_events_dropped.clone(),
        );
        let realtime_messages_sent = Counter::default();
        registry.register(
            "realtime_messages_sent",
            "Messages written to realtime connections",
            realtime_messages_sent.clone(),
        );
        let realtime_disconnects = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "realtime_disconnects",
            "Realtime connections closed, by reason",
            realtime_disconnects.clone(),
        );
        let db_batched_reads = Family::<ReadLabels, Counter>::default();
        registry.register(
            "db_batched_reads",
            "Point reads answered through batches, by read",
            db_batched_reads.clone(),
        );
        let db_batch_queries = Family::<ReadLabels, Counter>::default();
        registry.register(
            "db_batch_queries",
            "Queries that answered batched point reads, by read (reads / queries = mean batch size)",
            db_batch_queries.clone(),
        );
        Arc::new(Self {
            db_batched_reads,
            db_batch_queries,
            realtime_connections,
            realtime_subscriptions,
            realtime_events_published,
            realtime_events_dropped,
            realtime_messages_sent,
            realtime_disconnects,
            job_wait,
            job_duration,
            jobs_finished,
            jobs_queued,
            jobs_running,
            jobs_failed,
            jobs_dead,
            job_queue_depth,
            alert_changes,
            alert_event_latency,
            notifications,
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

    /// Sets the queue gauges from fresh counts (types no longer present go to zero).
    pub fn set_job_gauges(&self, counts: &[(String, crate::jobs::queue::Counts)]) {
        for family in [&self.jobs_queued, &self.jobs_running, &self.jobs_failed, &self.jobs_dead] {
            family.clear();
        }
        let mut depth = 0;
        for (job, c) in counts {
            let labels = JobTypeLabels { job: job.clone() };
            self.jobs_queued.get_or_create(&labels).set(c.queued);
            self.jobs_running.get_or_create(&labels).set(c.running);
            self.jobs_failed.get_or_create(&labels).set(c.failed);
            self.jobs_dead.get_or_create(&labels).set(c.dead);
            depth += c.queued;
        }
        self.job_queue_depth.set(depth);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
