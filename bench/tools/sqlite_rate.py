#!/usr/bin/env python3
"""SQLite's own rate for the work of one telemetry batch, with no server in between.

    sqlite_rate.py DB_FILE DEVICE_ID BATCH SECONDS

The same table, pragmas and statements Mash uses (WAL, synchronous=FULL, BEGIN IMMEDIATE,
INSERT ... ON CONFLICT DO NOTHING into sensor_readings, the device_state upsert), from one
connection in a tight loop: each batch is one transaction of BATCH readings over four metrics,
timestamps one microsecond apart (never duplicates). Prints readings per second.
"""
import sqlite3
import sys
import time
import uuid

db, device, batch, seconds = sys.argv[1], uuid.UUID(sys.argv[2]).bytes, int(sys.argv[3]), float(sys.argv[4])
con = sqlite3.connect(db, isolation_level=None)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=FULL")
con.execute("PRAGMA busy_timeout=5000")
con.execute("PRAGMA foreign_keys=ON")
t = int((time.time() - 1800) * 1e6) - 3_000_000_000  # half an hour ago, apart from the load generator's range
done = 0
start = time.perf_counter()
while time.perf_counter() - start < seconds:
    rows = [(device, "m%d" % (i % 4), t + i, ((t + i) % 10000) / 100.0) for i in range(batch)]
    latest = {}
    for r in rows:
        latest[r[1]] = r
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO sensor_readings (device_id, metric, ts, value) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
    con.executemany(
        "INSERT INTO device_state (device_id, metric, ts, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (device_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value "
        "WHERE excluded.ts > device_state.ts",
        list(latest.values()),
    )
    con.execute("COMMIT")
    t += batch
    done += batch
print("%.1f" % (done / (time.perf_counter() - start)))
