-- PostgreSQL's own rate for one job's queue work, the statements Mash runs: enqueue (insert and
-- NOTIFY), claim (the SKIP LOCKED lease, returning the row) and complete (delete by id).
INSERT INTO background_jobs (id, job_type, payload, priority, status, attempts, max_attempts, run_at, created_at, updated_at)
    VALUES (gen_random_uuid(), 'noop', '{}', 0, 'queued', 0, 5, now(), now(), now());
NOTIFY mash_jobs;
UPDATE background_jobs SET status = 'running', attempts = attempts + 1, locked_until = now() + interval '90 seconds',
        locked_by = 'pgbench', updated_at = now()
    WHERE id IN (SELECT id FROM background_jobs WHERE status = 'queued' AND run_at <= now() AND job_type IN ('noop')
                 ORDER BY priority DESC, run_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id AS jid \gset
DELETE FROM background_jobs WHERE id = :'jid' AND attempts = 1 AND status = 'running';
