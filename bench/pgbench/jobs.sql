-- PostgreSQL's own rate for one job's queue work, the statements Mash runs: enqueue (insert and
-- NOTIFY), claim (the SKIP LOCKED lease, returning the row) and complete (delete by id). The claim
-- answers the nil UUID when another client's lock left nothing to take, so every run has a row.
INSERT INTO background_jobs (id, job_type, payload, priority, status, attempts, max_attempts, run_at, created_at, updated_at)
    VALUES (gen_random_uuid(), 'noop', '{}', 0, 'queued', 0, 5, now(), now(), now());
NOTIFY mash_jobs;
WITH c AS (
    UPDATE background_jobs SET status = 'running', attempts = attempts + 1, locked_until = now() + interval '90 seconds',
            locked_by = 'pgbench', updated_at = now()
        WHERE id IN (SELECT id FROM background_jobs WHERE status = 'queued' AND run_at <= now() AND job_type IN ('noop')
                     ORDER BY priority DESC, run_at LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id)
SELECT coalesce((SELECT id FROM c), '00000000-0000-0000-0000-000000000000'::uuid) AS jid \gset
DELETE FROM background_jobs WHERE id = :jid AND attempts = 1 AND status = 'running';
