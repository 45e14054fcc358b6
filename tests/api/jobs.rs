//! The job queue: transactional enqueue, retries and dead letters, lease recovery, exclusive claims,
//! schedules across instances, and `GET /admin/jobs`.
