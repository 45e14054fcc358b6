# shellcheck shell=bash
# shellcheck disable=SC2034  # SCENARIO_* are read by run.sh
# The job queue and alerting, on PostgreSQL and on SQLite: no-op job throughput against the
# database's own rate for the same statements; telemetry ingestion with 100 active rules against
# the same ingestion without rules; and the time from a batch's 202 to its alert event while
# ingestion runs at half its measured maximum.
SCENARIO_TITLE="Jobs and alerts: queue throughput, ingestion with 100 rules, 202-to-alert-event latency"
SCENARIO_NEEDS_PG=1

: "${BENCH_JOBS:=20000}"
: "${BENCH_JOB_PRODUCERS:=4}"
: "${BENCH_JOB_CONCURRENCY:=4}"
# What to run: any of jobs, pg, sqlite (the alerting parts by database). All three by default.
: "${BENCH_ALERTS_PARTS:=jobs pg sqlite}"
: "${BENCH_ALERTS_ROUNDS:=3}"

scenario_how() {
    echo "Queue: \`examples/job_load.rs\` starts the queue's workers (JOB_CONCURRENCY=$BENCH_JOB_CONCURRENCY, as \`mash serve\` runs them) on a fresh database and enqueues $BENCH_JOBS \`noop\` jobs from $BENCH_JOB_PRODUCERS producers, one statement (and, on PostgreSQL, one NOTIFY) per job; jobs/s = jobs ÷ seconds from the first enqueue until the last job has run and left the table. Database's own rate for the same work, right after on the same table: PostgreSQL — pgbench -M prepared -c $BENCH_JOB_CONCURRENCY -j $BENCH_THREADS -T $BENCH_DURATION with \`bench/pgbench/jobs.sql\` (the insert, NOTIFY, the SKIP LOCKED claim and the delete); SQLite — \`bench/tools/sqlite_jobs.py\` (one connection, the same pragmas, one transaction per statement). Ingestion: \`examples/ingest_load.rs\` as in the telemetry scenario ($BENCH_INGEST_CONNECTIONS device connections; 1000-reading batches on PostgreSQL, 100 on SQLite) for $BENCH_DURATION s, without rules and then with 100 enabled rules over the four metrics the load sends (60 threshold, 20 rate, 10 anomaly, 10 stale; none fires), $BENCH_ALERTS_ROUNDS times in alternation on the same server (the rules disabled and enabled again between rounds), ratio = the median round's; with rules every batch is evaluated meanwhile (PostgreSQL: an evaluation job per batch; SQLite: handed to the in-process evaluator after its commit). Latency: with those rules, ingestion paced (INGEST_RATE) to half the rule-less rate, plus \`examples/alert_probe.rs\` sending one reading every 100 ms that alternately breaks and clears a \`gt 50\` rule of its own device, so every probe batch opens or resolves an alert; the figure is \`alert_event_latency_seconds\` (from the batch's acceptance to the \`publish_alert_events\` job publishing the event), its p50/p99 interpolated within the histogram's buckets, over the probe's events only."
}

# job_rate NAME URL: jobs/s through the queue.
job_rate() {
    local name=$1 url=$2 dir=$BENCH_TMP/jobs-$1 out="$BENCH_OUT/jobs-$1.json"
    mkdir -p "$dir"
    (cd "$dir" && timeout 600 "$JOB_LOAD" "$url" "$BENCH_JOBS" "$BENCH_JOB_PRODUCERS" "$BENCH_JOB_CONCURRENCY") \
        >"$out" 2>"$BENCH_OUT/jobs-$name.err" || { bench_log "job_load failed, see $out"; return 1; }
    # The result is the last line (log lines, e.g. sqlx's slow-statement warnings, come first).
    tail -n 1 "$out" | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["jobs_per_sec"])'
}

# rules_setup URL GROWER IDS_FILE: 100 rules over m0..m3 that never fire; their ids go to IDS_FILE.
rules_setup() {
    local url=$1 grower=$2 ids=$3 i metric body ok=0
    : >"$ids"
    for ((i = 0; i < 100; i++)); do
        metric="m$((i % 4))"
        case $((i % 10)) in
            0 | 1 | 2 | 3 | 4 | 5) body="\"kind\":\"threshold\",\"op\":\"gt\",\"threshold\":1e9" ;;
            6 | 7) body="\"kind\":\"rate\",\"op\":\"gt\",\"threshold\":1e12" ;;
            8) body="\"kind\":\"anomaly\",\"threshold\":1e6" ;;
            9) body="\"kind\":\"stale\",\"forSeconds\":86400" ;;
        esac
        curl -s --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" -H 'content-type: application/json' \
            -d "{\"growerId\":\"$grower\",\"metric\":\"$metric\",$body,\"severity\":\"warning\"}" \
            "$url/api/v1/alert-rules" | grep -o '^{"id":"[^"]*"' | cut -d'"' -f4 >>"$ids"
    done
    ok=$(wc -l <"$ids")
    [[ $ok -eq 100 ]] || { bench_log "alerts: only $ok of 100 rules created"; return 1; }
}

# rules_enabled URL IDS_FILE true|false: enables or disables every rule of IDS_FILE.
rules_enabled() {
    local url=$1 ids=$2 on=$3 id ok=0
    while read -r id; do
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 -X PATCH -H "authorization: Bearer $TEL_ADMIN_TOKEN" \
            -H 'content-type: application/json' -d "{\"enabled\":$on}" "$url/api/v1/alert-rules/$id" |
            grep -q '^200$' && ok=$((ok + 1))
    done <"$ids"
    [[ $ok -eq 100 ]] || { bench_log "alerts: only $ok of 100 rules set enabled=$on"; return 1; }
}

# queue_left URL: jobs still queued or running (GET /admin/jobs), plus readings handed to the
# in-process evaluator and not evaluated yet (SQLite; `alert_evaluation_backlog` in /metrics).
queue_left() {
    local jobs backlog
    jobs=$(curl -s --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" "$1/api/v1/admin/jobs" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["depth"] + d["running"])')
    backlog=$(curl -s --max-time 10 "$1/metrics" | awk '$1 == "alert_evaluation_backlog" { print $2 }')
    echo $((jobs + ${backlog:-0}))
}

# latency_quantiles BEFORE AFTER: "count p50_ms p99_ms" of alert_event_latency_seconds between two scrapes.
latency_quantiles() {
    python3 - "$1" "$2" <<'PY'
import re, sys
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'alert_event_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            out[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = float(m.group(2))
    return out
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
les = sorted(b)
cum = [(le, b[le] - a.get(le, 0.0)) for le in les]
total = cum[-1][1] if cum else 0
def q(p):
    if total == 0:
        return float("nan")
    rank, prev_le, prev_c = p * total, 0.0, 0.0
    for le, c in cum:
        if c >= rank:
            if le == float("inf"):
                return prev_le * 1000
            return (prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)) * 1000
        prev_le, prev_c = le, c
    return prev_le * 1000
print("%d %.1f %.1f" % (total, q(0.5), q(0.99)))
PY
}

alerts_backend() {
    local name=$1 label=$2 batch=$3 port dir=$BENCH_TMP/alerts-$1 pid url db_env=() grower
    port=$(free_port) || return 1
    [[ $name == pg ]] && db_env=(DATABASE_URL="$AL_PG_URL")
    telemetry_mash "alerts-$name" "$dir" "$port" "${db_env[@]}" RUST_LOG="${RUST_LOG:-warn}" "${MASH_EXTRA_ENV[@]}" || return 1
    pid=$MASH_PID
    wait_ready "$port" 60 "$pid" || { stop_mash "$pid" 5; return 1; }
    url="http://127.0.0.1:$port"
    telemetry_setup "alerts-$name" "$url" || { stop_mash "$pid" 5; return 1; }
    grower=$(curl -s --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" "$url/api/v1/growers" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])') || { stop_mash "$pid" 5; return 1; }
    local devices=$BENCH_TMP/devices-alerts-$name.txt load=$BENCH_TMP/load-alerts-$name.txt
    head -n "$BENCH_INGEST_CONNECTIONS" "$devices" >"$load"
    local probe_id probe_token
    read -r probe_id probe_token <<<"$(tail -n 1 "$devices")"

    run_ingest() { # TAG [INGEST_RATE]: "readings/s p99 errors"
        local out="$BENCH_OUT/alerts-ingest-$name-$1.json"
        INGEST_RATE=${2:-} timeout $((BENCH_DURATION + 60)) "$INGEST_LOAD" "$url" "$load" "$batch" \
            "$BENCH_INGEST_CONNECTIONS" "$BENCH_DURATION" >"$out" 2>"$BENCH_OUT/alerts-ingest-$name-$1.err" || return 1
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f %.1f %d" % (d["readings_per_sec"], d["p99_ms"], d["errors"]))' "$out"
    }
    # Without rules, then with them, BENCH_ALERTS_ROUNDS times in alternation on the same server
    # (rules disabled and enabled again between rounds); the figure is the median round's ratio.
    # This machine's speed drifts by 10-20% over minutes, which alternating pairs cancel.
    local r0 p0 e0 r1 p1 e1 round ids=$BENCH_TMP/alerts-rules-$name.txt ratios=() errors=0
    for ((round = 1; round <= BENCH_ALERTS_ROUNDS; round++)); do
        if ((round > 1)); then rules_enabled "$url" "$ids" false || { stop_mash "$pid" 5; return 1; }; fi
        read -r r0 p0 e0 <<<"$(run_ingest "norules-$round")" || { stop_mash "$pid" 5; return 1; }
        if ((round == 1)); then
            rules_setup "$url" "$grower" "$ids" || { stop_mash "$pid" 5; return 1; }
        else
            rules_enabled "$url" "$ids" true || { stop_mash "$pid" 5; return 1; }
        fi
        read -r r1 p1 e1 <<<"$(run_ingest "rules-$round")" || { stop_mash "$pid" 5; return 1; }
        ratios+=("$(ratio_pct "$r1" "$r0")") errors=$((errors + e0 + e1))
        bench_log "alerts $name: round $round: $r0/s without rules, $r1/s with 100 rules (${ratios[-1]}%)"
    done
    local drain_start drain_ms left
    now_ns_into drain_start
    for ((i = 0; i < 600; i++)); do
        left=$(queue_left "$url")
        [[ $left == 0 ]] && break
        sleep 0.1
    done
    drain_ms=$((($(now_ns) - drain_start) / 1000000))
    local pct
    pct=$(median "${ratios[@]}")
    bench_log "alerts $name: median ratio $pct% ($(IFS=/; echo "${ratios[*]}")); queue drained ${drain_ms} ms after the last load"
    md_row "$label: ingestion with 100 active rules ($batch-reading batches), median of $BENCH_ALERTS_ROUNDS" "$(fmt_int "$r1") readings/s (p99 $p1 ms; last round)" "the same load without rules, alternating: $(fmt_int "$r0") readings/s (p99 $p0 ms; last round)" "${pct}% (rounds: $(IFS=/; echo "${ratios[*]}")%) / ≥ 90%" "$(met "$pct" ge 90)"
    md_row "$label: evaluation backlog when that load stopped" "drained in $(fmt_int "$drain_ms") ms" "—" "(information)" "—"
    md_row "$label: ingestion errors (all runs)" "$errors" "—" "0" "$(met "$errors" le 0)"

    # The probe's own rule.
    curl -s -o /dev/null --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" -H 'content-type: application/json' \
        -d "{\"growerId\":\"$grower\",\"deviceId\":\"$probe_id\",\"metric\":\"probe\",\"kind\":\"threshold\",\"op\":\"gt\",\"threshold\":50,\"severity\":\"info\"}" \
        "$url/api/v1/alert-rules"
    local half before=$BENCH_TMP/alerts-metrics-$name-0.txt after=$BENCH_TMP/alerts-metrics-$name-1.txt
    half=$(awk -v r="$r0" 'BEGIN { printf "%.0f", r / 2 }')
    curl -s --max-time 10 "$url/metrics" >"$before"
    run_ingest half "$half" >"$BENCH_TMP/alerts-half-$name.txt" &
    local load_pid=$!
    timeout $((BENCH_DURATION + 30)) "$ALERT_PROBE" "$url" "$probe_id" "$probe_token" probe 100 "$BENCH_DURATION" \
        >"$BENCH_OUT/alerts-probe-$name.json" 2>"$BENCH_OUT/alerts-probe-$name.err"
    wait "$load_pid"
    for ((i = 0; i < 100; i++)); do
        [[ $(queue_left "$url") == 0 ]] && break
        sleep 0.1
    done
    curl -s --max-time 10 "$url/metrics" >"$after"
    local rh ph eh n p50 p99 probes
    read -r rh ph eh <"$BENCH_TMP/alerts-half-$name.txt"
    read -r n p50 p99 <<<"$(latency_quantiles "$before" "$after")"
    probes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["batches"])' "$BENCH_OUT/alerts-probe-$name.json")
    bench_log "alerts $name: $n events ($probes probe batches), p50 $p50 ms, p99 $p99 ms, ingestion meanwhile $rh/s (target $half/s)"
    md_row "$label: 202 → alert event, p50 / p99" "$p50 / $p99 ms ($n events from $probes probe batches; ingestion meanwhile $(fmt_int "$rh") readings/s, target $(fmt_int "$half"))" "200 ms" "p99 $(ratio_pct "$p99" 200)% of limit / < 200 ms" "$(met "$p99" lt 200)"
    stop_mash "$pid" 10 || true
}

scenario_run() {
    INGEST_LOAD=$(ingest_load_bin) || { bench_log "cannot build ingest_load"; return 1; }
    JOB_LOAD=$(example_bin job_load) || { bench_log "cannot build job_load"; return 1; }
    ALERT_PROBE=$(example_bin alert_probe) || { bench_log "cannot build alert_probe"; return 1; }

    [[ " $BENCH_ALERTS_PARTS " == *" jobs "* ]] && { alerts_jobs || return 1; }
    if [[ " $BENCH_ALERTS_PARTS " == *" pg "* ]]; then
        AL_PG_URL=$(fresh_pg_db "${BENCH_DB}_alerts") || return 1
        alerts_backend pg "PostgreSQL" 1000 || return 1
    fi
    if [[ " $BENCH_ALERTS_PARTS " == *" sqlite "* ]]; then
        alerts_backend sqlite "SQLite" 100 || return 1
    fi
}

alerts_jobs() {
    local db=${BENCH_DB}_jobs url r own pct
    url=$(fresh_pg_db "$db") || return 1
    r=$(job_rate pg "$url") || return 1
    own=$(BENCH_CONNECTIONS=$BENCH_JOB_CONCURRENCY pgbench_tps jobs "$BENCH_DIR/pgbench/jobs.sql" "$db") || return 1
    pct=$(ratio_pct "$r" "$own")
    bench_log "jobs pg: $r/s vs pgbench $own/s ($pct%)"
    md_row "PostgreSQL: no-op jobs enqueued and run" "$(fmt_int "$r") jobs/s" "pgbench, the same statements: $(fmt_int "$own") jobs/s" "${pct}% / ≥ 50%" "$(met "$pct" ge 50)"
    local file=$BENCH_TMP/jobs-sqlite/jobs.db
    rm -f "$file"*
    r=$(job_rate sqlite "sqlite://$file?mode=rwc") || return 1
    own=$(timeout $((BENCH_DURATION + 30)) python3 "$BENCH_DIR/tools/sqlite_jobs.py" "$file" "$BENCH_DURATION") || return 1
    pct=$(ratio_pct "$r" "$own")
    bench_log "jobs sqlite: $r/s vs python $own/s ($pct%)"
    md_row "SQLite: no-op jobs enqueued and run" "$(fmt_int "$r") jobs/s" "Python sqlite3, the same statements: $(fmt_int "$own") jobs/s" "${pct}% / ≥ 50%" "$(met "$pct" ge 50)"
}
