# shellcheck shell=bash
# shellcheck disable=SC2034  # SCENARIO_* are read by run.sh
# "Accepted means durable": kill -9 the server in the middle of an ingestion load, start it
# again, and check that every reading it acknowledged (202) is stored.
SCENARIO_TITLE="Telemetry durability: kill -9 during ingestion (PostgreSQL and SQLite)"
SCENARIO_NEEDS_PG=1

: "${BENCH_KILL_AFTER:=3}"

scenario_how() {
    echo "mash on a fresh database; \`examples/ingest_load.rs\` with 4 devices, batches of 100, records every acknowledged batch (device, first and last timestamp, count) to a file as the 202 arrives; after ${BENCH_KILL_AFTER} s the server gets SIGKILL; the load generator stops when the server has been unreachable for 1 s. mash is started again on the same database, and one SQL query counts, for every recorded batch, the stored readings of that device in that timestamp range (each batch owns its range). Lost = acknowledged − found."
}

# verify_acked NAME RECORD_FILE: prints "acknowledged found incomplete_batches".
verify_acked() {
    local name=$1 rec=$2 sql values
    if [[ $name == pg ]]; then
        values=$(awk '{ printf "%s(%s::uuid, %s::bigint, %s::bigint, %s)", (NR > 1 ? "," : ""), "'"'"'" $1 "'"'"'", $2, $3, $4 }' "$rec")
        sql="WITH acked(d, t0, t1, n) AS (VALUES $values),
             got AS (SELECT a.n, (SELECT count(*) FROM sensor_readings s WHERE s.device_id = a.d
                       AND s.ts BETWEEN TIMESTAMPTZ 'epoch' + a.t0 * interval '1 microsecond'
                                    AND TIMESTAMPTZ 'epoch' + a.t1 * interval '1 microsecond') AS c FROM acked a)
             SELECT sum(n), sum(c), count(*) FILTER (WHERE c < n) FROM got"
        psql_db "$DUR_PG_DB" -F ' ' <<<"$sql"
    else
        python3 - "$BENCH_TMP/durability-sqlite/data/mash.db" "$rec" <<'PY'
import sqlite3, sys, uuid
con = sqlite3.connect(sys.argv[1])
acked = found = bad = 0
for line in open(sys.argv[2]):
    d, t0, t1, n = line.split()
    c = con.execute("SELECT count(*) FROM sensor_readings WHERE device_id = ? AND ts BETWEEN ? AND ?",
                    (uuid.UUID(d).bytes, int(t0), int(t1))).fetchone()[0]
    acked += int(n); found += c; bad += c < int(n)
print(acked, found, bad)
PY
    fi
}

durability_backend() {
    local name=$1 label=$2 port dir=$BENCH_TMP/durability-$1 pid url db_env=() rec=$BENCH_TMP/acked-$1.txt load_pid
    port=$(free_port) || return 1
    [[ $name == pg ]] && db_env=(DATABASE_URL="$DUR_PG_URL")
    telemetry_mash "durability-$name" "$dir" "$port" "${db_env[@]}" RUST_LOG=warn || return 1
    pid=$MASH_PID
    wait_ready "$port" 60 "$pid" || { stop_mash "$pid" 5; return 1; }
    url="http://127.0.0.1:$port"
    BENCH_INGEST_CONNECTIONS=4 telemetry_setup "durability-$name" "$url" || { stop_mash "$pid" 5; return 1; }
    head -n 4 "$BENCH_TMP/devices-durability-$name.txt" >"$BENCH_TMP/dur-devices-$name.txt"
    : >"$rec"
    timeout 60 "$INGEST_LOAD" "$url" "$BENCH_TMP/dur-devices-$name.txt" 100 4 30 "$rec" \
        >"$BENCH_OUT/durability-$name.json" 2>"$BENCH_OUT/durability-$name.err" &
    load_pid=$!
    sleep "$BENCH_KILL_AFTER"
    kill -9 "$pid"
    wait "$load_pid" || true
    local batches
    batches=$(wc -l <"$rec")
    bench_log "durability $name: killed mash after ${BENCH_KILL_AFTER}s; $batches batches acknowledged"
    if ((batches == 0)); then
        bench_log "durability $name: nothing was acknowledged before the kill; see $BENCH_OUT/durability-$name.err"
        return 1
    fi
    start_mash "durability-$name-restart" "$dir" "$port" "${db_env[@]}" RUST_LOG=warn
    pid=$MASH_PID
    wait_ready "$port" 60 "$pid" || { stop_mash "$pid" 5; return 1; }
    local acked found bad
    read -r acked found bad <<<"$(verify_acked "$name" "$rec")" || { stop_mash "$pid" 5; return 1; }
    bench_log "durability $name: acknowledged $acked, found $found, incomplete batches $bad"
    md_row "$label: acknowledged readings lost after kill -9" "$((acked - found)) of $(fmt_int "$acked") ($batches batches; $bad incomplete)" "0" "0 lost" "$(met "$((acked - found))" le 0)"
    stop_mash "$pid" 10 || true
}

scenario_run() {
    INGEST_LOAD=$(ingest_load_bin) || { bench_log "cannot build ingest_load"; return 1; }
    DUR_PG_DB=${BENCH_DB}_durability
    DUR_PG_URL=$(fresh_pg_db "$DUR_PG_DB") || return 1
    durability_backend pg "PostgreSQL" || return 1
    durability_backend sqlite "SQLite" || return 1
}
