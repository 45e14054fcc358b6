//! Prometheus metrics, kept in a registry owned by the application state (no globals, so
//! several applications in one test process each count their own). Their label sets are in
//! `labels.rs`.

use std::sync::Arc;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};

mod labels;

pub use labels::{
    ChangeLabels, HttpLabels, JobLabels, JobOutcome, JobTypeLabels, NotificationLabels, ReadLabels, ReasonLabels,
    RejectLabels, SourceLabels, TransportLabels, WebhookLabels,
};

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

fn latency_family<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(latency_histogram)
}

/// Registers `metric` under `name` and hands back the handle that records into it.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
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

impl Metrics {
    /// Every metric, registered in the order `/metrics` lists them.
    pub fn new() -> Arc<Self> {
        let r = &mut Registry::default();
        let http_requests =
            add(r, "http_requests", "HTTP requests answered, by method, route template and status", Family::default());
        let http_duration = add(
            r,
            "http_request_duration_seconds",
            "Time from request to response head, by method, route template and status",
            latency_family(),
        );
        let http_in_flight = add(r, "http_requests_in_flight", "HTTP requests being handled now", Gauge::default());
        let build_info = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        build_info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))]).set(1);
        r.register("mash_build", "Build information", build_info);
        let telemetry_ingested =
            add(r, "telemetry_readings_ingested", "Sensor readings stored, by source", Family::default());
        let telemetry_duplicates = add(
            r,
            "telemetry_readings_duplicate",
            "Sensor readings received again and not stored twice, by source",
            Family::default(),
        );
        let telemetry_rejected = add(
            r,
            "telemetry_rejected",
            "Telemetry batches or MQTT messages refused, by source and reason",
            Family::default(),
        );
        let orders_created = add(r, "shop_orders_created", "Orders placed", Counter::default());
        let payment_webhooks = add(
            r,
            "payment_webhook_events",
            "Payment webhook events received, by provider and outcome",
            Family::default(),
        );
        let job_wait =
            add(r, "job_wait_seconds", "Time from a job becoming due to its start, by job type", latency_family());
        let job_duration = add(r, "job_duration_seconds", "Time a job run took, by job type", latency_family());
        let jobs_finished = add(r, "jobs_finished", "Job runs finished, by job type and outcome", Family::default());
        let jobs_queued =
            add(r, "jobs_queued", "Jobs waiting to run (retries included), by job type", Family::default());
        let jobs_running = add(r, "jobs_running", "Jobs leased to a worker, by job type", Family::default());
        let jobs_failed =
            add(r, "jobs_failed", "Jobs queued again after a failed attempt, by job type", Family::default());
        let jobs_dead = add(r, "jobs_dead", "Dead-lettered jobs, by job type", Family::default());
        let job_queue_depth = add(r, "job_queue_depth", "Jobs waiting to run, all types", Gauge::default());
        let alert_changes = add(r, "alert_changes", "Alert changes, by change", Family::default());
        // Finer than the HTTP buckets: the target is p99 under 200 ms.
        let alert_event_latency = add(
            r,
            "alert_event_latency_seconds",
            "From the 202 of the telemetry batch behind an alert change to its realtime event",
            Histogram::new([
                0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                1.0, 2.0, 5.0,
            ]),
        );
        let notifications = add(r, "notifications", "Notification attempts, by channel and status", Family::default());
        let realtime_connections =
            add(r, "realtime_connections", "Open realtime connections, by transport", Family::default());
        let realtime_subscriptions =
            add(r, "realtime_subscriptions", "Realtime subscriptions held here", Gauge::default());
        let realtime_events_published =
            add(r, "realtime_events_published", "Realtime events published", Counter::default());
        let realtime_events_dropped = add(
            r,
            "realtime_events_dropped",
            "Realtime events dropped because the Redis publishing queue was full",
            Counter::default(),
        );
        let realtime_messages_sent =
            add(r, "realtime_messages_sent", "Messages written to realtime connections", Counter::default());
        let realtime_disconnects =
            add(r, "realtime_disconnects", "Realtime connections closed, by reason", Family::default());
        let db_batched_reads =
            add(r, "db_batched_reads", "Point reads answered through batches, by read", Family::default());
        let db_batch_queries = add(
            r,
            "db_batch_queries",
            "Queries that answered batched point reads, by read (reads / queries = mean batch size)",
            Family::default(),
        );
        Arc::new(Self {
            registry: std::mem::take(r),
            http_requests,
            http_duration,
            http_in_flight,
            telemetry_ingested,
            telemetry_duplicates,
            telemetry_rejected,
            orders_created,
            payment_webhooks,
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
            realtime_connections,
            realtime_subscriptions,
            realtime_events_published,
            realtime_events_dropped,
            realtime_messages_sent,
            realtime_disconnects,
            db_batched_reads,
            db_batch_queries,
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
