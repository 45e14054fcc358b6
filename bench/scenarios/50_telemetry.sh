# shellcheck shell=bash
# shellcheck disable=SC2034  # SCENARIO_* are read by run.sh
# Telemetry ingestion and history, on PostgreSQL and on SQLite: HTTP batches of 100 and 1000
# readings against the database's own rate for the same statements into the same tables, and a
# one-day 1 Hz history bucketed to 5 minutes.
SCENARIO_TITLE="Telemetry: ingestion and history (PostgreSQL and SQLite)"
SCENARIO_NEEDS_PG=1

scenario_how() {
    echo "For each backend, a mash with DEVICE auth clients: \`examples/ingest_load.rs\` (Rust, reqwest, on loopback) with $BENCH_INGEST_CONNECTIONS concurrent workers, each sending as its own device, batches of 100 or 1000 readings over four metrics with unique timestamps (no duplicates), for $BENCH_DURATION s; readings/s = readings acknowledged (202) ÷ seconds. Database's own rate, run right after on the same database while mash idles: PostgreSQL — pgbench -M prepared -c $BENCH_INGEST_CONNECTIONS -j $BENCH_THREADS -T $BENCH_DURATION with the same single statement Mash sends (the \`sensor_readings\` insert ON CONFLICT DO NOTHING and the \`device_state\` upsert in one statement), its rows generated server-side by generate_series (so PostgreSQL parses no JSON and receives no data: an upper bound); SQLite — \`bench/tools/sqlite_rate.py\` (Python's sqlite3, one connection, the same pragmas, BEGIN IMMEDIATE, the same two statements per batch). History: 86,400 readings (one day at 1 Hz) of one device's metric, then (PostgreSQL: \`ANALYZE\`, as autovacuum would do within a minute) GET /api/v1/devices/{id}/telemetry?bucket=5m&agg=avg over that day, back to back on one connection (wrk -c 1 -t 1) for $BENCH_DURATION s; latency p50/p99 as wrk reports them."
}

# ingest_rate NAME URL BATCH: readings/s through HTTP, and the p99 batch latency.
ingest_rate() {
    local name=$1 url=$2 batch=$3 out="$BENCH_OUT/ingest-$1-$3.json"
    head -n "$BENCH_INGEST_CONNECTIONS" "$BENCH_TMP/devices-$name.txt" >"$BENCH_TMP/load-devices-$name.txt"
    timeout $((BENCH_DURATION + 60)) "$INGEST_LOAD" "$url" "$BENCH_TMP/load-devices-$name.txt" "$batch" \
        "$BENCH_INGEST_CONNECTIONS" "$BENCH_DURATION" >"$out" 2>"$BENCH_OUT/ingest-$name-$batch.err" || {
        bench_log "ingest_load failed, see $out"
        return 1
    }
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f %.1f %d" % (d["readings_per_sec"], d["p99_ms"], d["errors"]))' "$out"
}

# pg_own_rate BATCH DB: readings/s of the same statement run by pgbench.
pg_own_rate() {
    local batch=$1 db=$2 script=$BENCH_TMP/ingest-$1.sql tps
    cat >"$script" <<SQL
WITH src AS (
    SELECT d.id AS device_id, 'm' || (g % 4) AS metric,
           clock_timestamp() - interval '40 minutes' + g * interval '1 microsecond' AS ts, random() * 100 AS value
    FROM (SELECT id FROM devices WHERE deleted_at IS NULL ORDER BY id OFFSET :client_id LIMIT 1) d,
         generate_series(1, $batch) g
), ins AS (
    INSERT INTO sensor_readings (device_id, metric, ts, value)
    SELECT device_id, metric, ts, value FROM src ON CONFLICT DO NOTHING RETURNING 1
), st AS (
    INSERT INTO device_state (device_id, metric, ts, value)
    SELECT DISTINCT ON (device_id, metric) device_id, metric, ts, value FROM src ORDER BY device_id, metric, ts DESC
    ON CONFLICT (device_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value
    WHERE excluded.ts > device_state.ts
)
SELECT count(*) FROM ins;
SQL
    tps=$(BENCH_CONNECTIONS=$BENCH_INGEST_CONNECTIONS pgbench_tps "ingest-$batch" "$script" "$db") || return 1
    awk -v t="$tps" -v b="$batch" 'BEGIN { printf "%.0f\n", t * b }'
}

# history_latency NAME URL DEVICE: "p50 p99" ms of the 5-minute buckets over one day.
history_latency() {
    local name=$1 url=$2 device=$3 from to w
    from=$(date -u -d '-24 hours' +%Y-%m-%dT%H:%M:%SZ)
    to=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    w=$(BENCH_CONNECTIONS=1 BENCH_THREADS=1 wrk_run "history-$name" \
        "$url/api/v1/devices/$device/telemetry?metric=temperature&from=$from&to=$to&bucket=5m&agg=avg" \
        -H "Authorization: Bearer $TEL_ADMIN_TOKEN") || return 1
    local rps p50 p99 err non2xx points
    read -r rps p50 p99 err non2xx <<<"$w"
    points=$(curl -s --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" \
        "$url/api/v1/devices/$device/telemetry?metric=temperature&from=$from&to=$to&bucket=5m&agg=avg" | grep -o '"ts"' | wc -l)
    echo "$p50 $p99 $((err + non2xx)) $points $rps"
}

telemetry_backend() {
    local name=$1 label=$2 port dir=$BENCH_TMP/telemetry-$1 pid url db_env=() own100 own1000
    port=$(free_port) || return 1
    [[ $name == pg ]] && db_env=(DATABASE_URL="$TEL_PG_URL")
    telemetry_mash "telemetry-$name" "$dir" "$port" "${db_env[@]}" RUST_LOG="${RUST_LOG:-warn}" "${MASH_EXTRA_ENV[@]}" || return 1
    pid=$MASH_PID
    wait_ready "$port" 60 "$pid" || { stop_mash "$pid" 5; return 1; }
    url="http://127.0.0.1:$port"
    telemetry_setup "$name" "$url" || { stop_mash "$pid" 5; return 1; }

    local r100 r1000 p99_100 p99_1000 e100 e1000 pct100 pct1000
    read -r r100 p99_100 e100 <<<"$(ingest_rate "$name" "$url" 100)" || { stop_mash "$pid" 5; return 1; }
    read -r r1000 p99_1000 e1000 <<<"$(ingest_rate "$name" "$url" 1000)" || { stop_mash "$pid" 5; return 1; }
    local hist_device
    hist_device=$(tail -n 1 "$BENCH_TMP/devices-$name.txt" | cut -d' ' -f1)
    if [[ $name == pg ]]; then
        own100=$(pg_own_rate 100 "$TEL_PG_DB") || { stop_mash "$pid" 5; return 1; }
        own1000=$(pg_own_rate 1000 "$TEL_PG_DB") || { stop_mash "$pid" 5; return 1; }
        psql_db "$TEL_PG_DB" -c \
            "INSERT INTO sensor_readings (device_id, metric, ts, value)
             SELECT '$hist_device', 'temperature', date_trunc('second', now()) - s * interval '1 second', 20 + 5 * sin(s / 3600.0)
             FROM generate_series(0, 86399) s" -c "ANALYZE sensor_readings" >/dev/null || { stop_mash "$pid" 5; return 1; }
    else
        local file=$dir/data/mash.db
        own100=$(timeout $((BENCH_DURATION + 30)) python3 "$BENCH_DIR/tools/sqlite_rate.py" "$file" \
            "$(head -n 1 "$BENCH_TMP/devices-$name.txt" | cut -d' ' -f1)" 100 "$BENCH_DURATION") || { stop_mash "$pid" 5; return 1; }
        own1000=$(timeout $((BENCH_DURATION + 30)) python3 "$BENCH_DIR/tools/sqlite_rate.py" "$file" \
            "$(head -n 1 "$BENCH_TMP/devices-$name.txt" | cut -d' ' -f1)" 1000 "$BENCH_DURATION") || { stop_mash "$pid" 5; return 1; }
        python3 - "$file" "$hist_device" <<'PY' || { stop_mash "$pid" 5; return 1; }
import math, sqlite3, sys, time, uuid
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA busy_timeout=5000")
dev = uuid.UUID(sys.argv[2]).bytes
now = int(time.time())
con.execute("BEGIN IMMEDIATE")
con.executemany("INSERT INTO sensor_readings (device_id, metric, ts, value) VALUES (?, 'temperature', ?, ?)",
                ((dev, (now - s) * 1_000_000, 20 + 5 * math.sin(s / 3600.0)) for s in range(86400)))
con.execute("COMMIT")
PY
    fi
    pct100=$(ratio_pct "$r100" "$own100")
    pct1000=$(ratio_pct "$r1000" "$own1000")
    bench_log "telemetry $name: 100-batches $r100/s vs $own100/s ($pct100%), 1000-batches $r1000/s vs $own1000/s ($pct1000%)"
    md_row "$label: HTTP ingestion, 100-reading batches" "$(fmt_int "$r100") readings/s (p99 $p99_100 ms)" "$OWN_LABEL: $(fmt_int "$own100") readings/s" "${pct100}% / ≥ 50%" "$(met "$pct100" ge 50)"
    md_row "$label: HTTP ingestion, 1000-reading batches" "$(fmt_int "$r1000") readings/s (p99 $p99_1000 ms)" "$OWN_LABEL: $(fmt_int "$own1000") readings/s" "${pct1000}% / ≥ 50%" "$(met "$pct1000" ge 50)"
    if [[ $name == pg ]]; then
        md_row "$label: 1000-reading batches, absolute" "$(fmt_int "$r1000") readings/s" "100,000 readings/s" "$(ratio_pct "$r1000" 100000)% / ≥ 100%" "$(met "$r1000" ge 100000)"
    fi
    md_row "$label: ingestion errors (both runs)" "$((e100 + e1000))" "—" "0" "$(met "$((e100 + e1000))" le 0)"
    local p50 p99 herr points hrps
    read -r p50 p99 herr points hrps <<<"$(history_latency "$name" "$url" "$hist_device")" || { stop_mash "$pid" 5; return 1; }
    md_row "$label: one day at 1 Hz → 5-minute buckets (avg)" "p50 $p50 ms, p99 $p99 ms ($points points, $(fmt_int "$hrps") req/s, one connection)" "50 ms" "p99 $(ratio_pct "$p99" 50)% of limit / < 50 ms" "$(met "$p99" lt 50)"
    [[ $herr -eq 0 ]] || md_row "$label: history errors" "$herr" "—" "0" "**no**"
    stop_mash "$pid" 10 || true
}

scenario_run() {
    INGEST_LOAD=$(ingest_load_bin) || { bench_log "cannot build ingest_load"; return 1; }
    TEL_PG_DB=${BENCH_DB}_telemetry
    TEL_PG_URL=$(fresh_pg_db "$TEL_PG_DB") || return 1
    OWN_LABEL="pgbench, the same statement"
    telemetry_backend pg "PostgreSQL" || return 1
    OWN_LABEL="Python sqlite3, the same statements"
    telemetry_backend sqlite "SQLite" || return 1
}
