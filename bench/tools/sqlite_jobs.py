#!/usr/bin/env python3
"""SQLite's own rate for one job's queue work, with no server in between.

    sqlite_jobs.py DB_FILE SECONDS

The table, pragmas and statements Mash uses (WAL, synchronous=FULL): per job, one transaction
each for the enqueue (INSERT), the claim (UPDATE ... WHERE id IN (SELECT ... LIMIT 1) RETURNING)
and the completion (DELETE), from one connection in a tight loop. Prints jobs per second.
"""
import datetime
import json
import sqlite3
import sys
import time
import uuid

db, seconds = sys.argv[1], float(sys.argv[2])
con = sqlite3.connect(db, isolation_level=None)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=FULL")
con.execute("PRAGMA busy_timeout=5000")
con.execute("PRAGMA foreign_keys=ON")


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


done = 0
start = time.perf_counter()
while time.perf_counter() - start < seconds:
    t = now()
    con.execute(
        "INSERT INTO background_jobs (id, job_type, payload, priority, status, attempts, max_attempts, run_at, "
        "created_at, updated_at) VALUES (?, 'noop', ?, 0, 'queued', 0, 5, ?, ?, ?)",
        (uuid.uuid4().bytes, json.dumps({}), t, t, t),
    )
    t = now()
    row = con.execute(
        "UPDATE background_jobs SET status = 'running', attempts = attempts + 1, locked_until = ?, locked_by = 'py', "
        "updated_at = ? WHERE id IN (SELECT id FROM background_jobs WHERE status = 'queued' AND run_at <= ? "
        "AND job_type IN ('noop') ORDER BY priority DESC, run_at LIMIT 1) RETURNING id, attempts",
        (t, t, t),
    ).fetchone()
    con.execute("DELETE FROM background_jobs WHERE id = ? AND attempts = ? AND status = 'running'", row)
    done += 1
print("%.0f" % (done / (time.perf_counter() - start)))
