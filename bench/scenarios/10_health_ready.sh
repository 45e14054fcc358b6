# shellcheck shell=bash
# shellcheck disable=SC2034  # SCENARIO_* are read by run.sh
# GET /health/ready throughput against the floor set by PostgreSQL itself: the endpoint does one
# trivial DB round trip, so pgbench running `SELECT 1` at the same concurrency is the most a
# server could do; Mash should keep at least half of it.
SCENARIO_TITLE="Readiness endpoint throughput vs raw PostgreSQL"
SCENARIO_NEEDS_PG=1

scenario_how() {
    echo "wrk -t $BENCH_THREADS -c $BENCH_CONNECTIONS -d ${BENCH_DURATION}s GET /health/ready on mash (PostgreSQL database \`$BENCH_DB\`), then pgbench -n -M $BENCH_PGBENCH_MODE -c $BENCH_CONNECTIONS -j $BENCH_THREADS -T $BENCH_DURATION with a script of \`SELECT 1;\` (bench/pgbench/select1.sql) against the same server; tps excludes connection set-up. Ratio = mash req/s ÷ pgbench tps. RSS is read from /proc right after the wrk run; /health/live gets the same wrk load afterwards. Mash runs with LOG_FORMAT=${BENCH_LOG_FORMAT:-json} and RUST_LOG=${RUST_LOG:-unset (server default)}, DB_MAX_CONNECTIONS=${BENCH_DB_MAX_CONNECTIONS:-server default}."
}

scenario_run() {
    local w rps p50 p99 err non2xx tps pct rss
    # Short warm-up so the pool is filled and caches are hot before measuring.
    BENCH_DURATION=2 wrk_run health_ready-warmup "$MASH_URL/health/ready" >/dev/null || return 1
    w=$(wrk_run health_ready "$MASH_URL/health/ready") || return 1
    read -r rps p50 p99 err non2xx <<<"$w"
    rss=$(rss_kb "$MASH_PG_PID")
    tps=$(pgbench_tps select1 "$BENCH_DIR/pgbench/select1.sql") || return 1
    pct=$(ratio_pct "$rps" "$tps")
    # Same load on the endpoint that touches no database: the HTTP stack's ceiling here.
    local live lrps
    live=$(wrk_run health_live "$MASH_URL/health/live") || return 1
    read -r lrps _ <<<"$live"
    bench_log "health_ready: mash $rps req/s, pgbench $tps tps ($pct%)"

    md_row "GET /health/ready throughput" "$(fmt_int "$rps") req/s" \
        "pgbench \`SELECT 1\` (-M $BENCH_PGBENCH_MODE): $(fmt_int "$tps") tps" "${pct}% / ≥ 50%" "$(met "$pct" ge 50)"
    md_row "Latency p50 / p99 under that load" "$p50 / $p99 ms" "—" "(information)" "—"
    md_row "Errors (socket errors + non-2xx)" "$((err + non2xx))" "—" "0" "$(met "$((err + non2xx))" le 0)"
    md_row "RSS right after the load run (PostgreSQL)" "$(kb_to_mib "$rss") MiB" "—" "(information)" "—"
    md_row "GET /health/live throughput (no database)" "$(fmt_int "$lrps") req/s" "—" "(information: HTTP stack ceiling)" "—"
    # sqlx pings every connection as it goes back to the pool, so each checkout costs two round
    # trips; this is PostgreSQL's own rate for two trivial round trips per transaction.
    local tps2 pct2
    tps2=$(pgbench_tps select1x2 "$BENCH_DIR/pgbench/select1x2.sql") || return 1
    pct2=$(ratio_pct "$rps" "$tps2")
    md_row "GET /health/ready vs two round trips" "$(fmt_int "$rps") req/s" \
        "pgbench 2× \`SELECT 1\` per transaction: $(fmt_int "$tps2") tps" "${pct2}% (information)" "—"

    # The floor of the stack itself: a bare axum server (no middleware) pinging through an sqlx
    # pool set up as mash's. What it serves is the most any axum + sqlx server serves here.
    local floor fport fpid frps flive fpct
    floor=$(example_bin ready_floor) || return 1
    fport=$(free_port) || return 1
    "$floor" "$MASH_PG_URL" "$fport" "${BENCH_DB_MAX_CONNECTIONS:-16}" >"$BENCH_OUT/ready_floor.log" 2>&1 &
    fpid=$!
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$fport/ready" >/dev/null 2>&1 && break; sleep 0.1; done
    BENCH_DURATION=2 wrk_run ready_floor-warmup "http://127.0.0.1:$fport/ready" >/dev/null || { kill "$fpid"; return 1; }
    frps=$(wrk_rps ready_floor "http://127.0.0.1:$fport/ready") || { kill "$fpid"; return 1; }
    flive=$(wrk_rps ready_floor_live "http://127.0.0.1:$fport/live") || { kill "$fpid"; return 1; }
    kill "$fpid"; wait "$fpid" 2>/dev/null
    fpct=$(ratio_pct "$frps" "$tps")
    bench_log "health_ready: bare axum + sqlx floor $frps req/s ($fpct% of pgbench), bare axum live $flive req/s"
    md_row "Floor: bare axum + sqlx pool ping, no middleware (\`examples/ready_floor.rs\`)" "$(fmt_int "$frps") req/s" \
        "pgbench \`SELECT 1\`: $(fmt_int "$tps") tps" "${fpct}% (information: the stack's own ceiling)" "—"
    md_row "Floor: bare axum, no database" "$(fmt_int "$flive") req/s" "—" "(information)" "—"
    md_row "GET /health/ready vs the floor" "$(fmt_int "$rps") req/s" "bare axum + sqlx: $(fmt_int "$frps") req/s" \
        "$(ratio_pct "$rps" "$frps")% (information)" "—"
}
