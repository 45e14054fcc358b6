# shellcheck shell=bash
# shellcheck disable=SC2034,SC2153  # SCENARIO_* are read by run.sh; MASH_PID is set by start_mash
# Realtime (WebSocket path subscriptions), on PostgreSQL: how many idle authenticated
# connections one mash holds and what each costs in RSS; the time from a telemetry batch's 202
# to its event at 1,000 subscribers of the device's live path, on one instance and on two
# instances sharing Redis; and how many event messages per second reach those subscribers,
# against Redis pub/sub doing the same fan-out to the same client.
SCENARIO_TITLE="Realtime: idle WebSocket connections, 202-to-event latency, fan-out (PostgreSQL)"
SCENARIO_NEEDS_PG=1

: "${BENCH_RT_IDLE:=10000}"
: "${BENCH_RT_SUBSCRIBERS:=1000}"
: "${BENCH_RT_EVENTS:=500}"
: "${BENCH_RT_INTERVAL_MS:=20}"
: "${BENCH_RT_POSTERS:=16}"
: "${BENCH_RT_FANOUT_PATHS:=10}"
: "${BENCH_RT_WINDOW:=64}"
: "${BENCH_RT_SETTLE:=12}"
: "${BENCH_REDIS_URL:=}"

scenario_how() {
    echo "A fresh PostgreSQL database \`${BENCH_DB}_realtime\`, the bench admin seeded, a grower, $((BENCH_RT_FANOUT_PATHS > 2 ? BENCH_RT_FANOUT_PATHS : 2)) devices, and a GROWER user who is a member of the grower (the subscribers' token; ${RT_TOKEN_WHO:-a grower member}); mash started with RUST_LOG=warn and ACCESS_TOKEN_TTL_SECS=3600, other REALTIME_* settings at their defaults. Load: \`examples/realtime_load.rs\` (tokio-tungstenite, on loopback), opening connections ${RT_OPEN_CONCURRENCY:-200} at a time, each \`GET /api/v1/realtime?access_token=…\`, one \`subscribe\`, open once its snapshot arrived, read continuously (server pings answered). **Idle:** VmRSS of mash (from /proc/PID/status) after setup, then $BENCH_RT_IDLE connections each subscribed to the second device's \`/live/sensors/{id}\`; once all are open, $BENCH_RT_SETTLE s (past a server ping round, REALTIME_PING_SECS=10) and VmRSS again; per connection = (after − before) ÷ connections still open then; \`realtime_connections\` from /metrics is shown as the server's own count. **Latency:** $BENCH_RT_SUBSCRIBERS subscribers of the first device's \`/live/sensors/{id}\`, then $BENCH_RT_EVENTS one-reading batches, one every $BENCH_RT_INTERVAL_MS ms, posted as the device (\`POST /api/v1/telemetry/batch\`, \`Authorization: Device …\`); latency = when a subscriber got the event carrying the batch's value − when that batch's 202 arrived (0 if the event came first), over every (subscriber, batch) pair; the client also checks each subscriber's ids are consecutive. **Two instances:** two mash on the same database, data directory (keys) and Redis (\`REDIS_URL\`, ${RT_REDIS_WHAT:-a private redis-server}), subscribers alternating between them, batches posted to the first. **Fan-out:** $BENCH_RT_SUBSCRIBERS subscribers on one instance, each subscribed to the live paths of $BENCH_RT_FANOUT_PATHS devices (the admin posts one reading per device per batch, so each batch is $BENCH_RT_FANOUT_PATHS events); $BENCH_RT_POSTERS tasks post as fast as the subscribers keep up (a batch only while every subscriber is at most $BENCH_RT_WINDOW messages behind, so none becomes a slow consumer), for $BENCH_DURATION s; messages/s = event messages received by all subscribers ÷ time from the first post to the last receipt; the share of time the posters were held by the window says whether delivery (high) or ingestion (near 0) set the pace. Its limit, right after: the same program against \`realtime_load bare-server\` (tokio-tungstenite and a tokio broadcast channel, no auth, no database, each connection writing what is queued and flushing once, as mash does) with the same subscribers and subscriptions, $BENCH_RT_POSTERS publisher connections each sending a message of the same size (broadcast once per path) and waiting for its ack, the same window."
}

# rt_json FILE EXPR...: fields of the last JSON line of FILE, space-separated (python expressions over d).
rt_json() {
    local file=$1
    shift
    tail -n 1 "$file" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
def f(v):
    if isinstance(v, float):
        return "%.1f" % v
    if v is None:
        return "-"
    return str(v)
print(" ".join(f(eval(e, {"d": d, "json": json})) for e in sys.argv[1:]))' "$@"
}

# rt_metric URL NAME: the sum of a metric's samples on /metrics (0 when absent).
rt_metric() {
    curl -s --max-time 10 "$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f\n", s }'
}

# rt_setup URL: the admin token (TEL_ADMIN_TOKEN), a grower with two devices
# ($BENCH_TMP/devices-rt.txt) and the subscribers' token RT_TOKEN: a GROWER user who is a member
# of that grower (the admin token when that cannot be set up).
rt_setup() {
    local url=$1 grower body uid
    BENCH_INGEST_CONNECTIONS=$((BENCH_RT_FANOUT_PATHS > 2 ? BENCH_RT_FANOUT_PATHS - 1 : 1)) telemetry_setup rt "$url" || return 1
    grower=$(curl -s --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" "$url/api/v1/growers" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])') || return 1
    local email=rt-viewer@example.com pass="realtime viewer passphrase 2026"
    body=$(curl -s --max-time 10 -H 'content-type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$pass\",\"name\":\"Realtime viewer\"}" "$url/api/v1/auth/register")
    uid=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["user"]["id"])' "$body" 2>/dev/null)
    RT_TOKEN=
    if [[ -n $uid ]] &&
        curl -sf -o /dev/null --max-time 10 -X PATCH -H "authorization: Bearer $TEL_ADMIN_TOKEN" -H 'content-type: application/json' \
            -d '{"role":"GROWER"}' "$url/api/v1/users/$uid" &&
        curl -sf -o /dev/null --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" -H 'content-type: application/json' \
            -d "{\"userId\":\"$uid\",\"role\":\"MEMBER\"}" "$url/api/v1/growers/$grower/members"; then
        RT_TOKEN=$(curl -s --max-time 10 -H 'content-type: application/json' \
            -d "{\"email\":\"$email\",\"password\":\"$pass\"}" "$url/api/v1/auth/login" |
            sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
    fi
    if [[ -n $RT_TOKEN ]]; then
        RT_TOKEN_WHO="a grower member"
    else
        bench_log "realtime: could not set up a grower member (register: ${body:0:200}); subscribing as the admin"
        RT_TOKEN=$TEL_ADMIN_TOKEN
        RT_TOKEN_WHO="**the admin**: setting up a grower member failed"
    fi
    read -r RT_DEV RT_DEV_TOKEN <<<"$(sed -n 1p "$BENCH_TMP/devices-rt.txt")"
    read -r RT_IDLE_DEV _ <<<"$(sed -n 2p "$BENCH_TMP/devices-rt.txt")"
    RT_FANOUT_DEVS=$(head -n "$BENCH_RT_FANOUT_PATHS" "$BENCH_TMP/devices-rt.txt" | cut -d' ' -f1 | paste -sd,)
}

# rt_idle URL PID: the idle-connection rows.
rt_idle() {
    local url=$1 pid=$2 out=$BENCH_OUT/realtime-idle.jsonl need i before after
    need=$((BENCH_RT_IDLE + 500))
    if (($(ulimit -n) < need)); then
        ulimit -n "$(ulimit -Hn)" 2>/dev/null
        if (($(ulimit -n) < need)); then
            bench_log "realtime: ulimit -n is $(ulimit -n), $need needed for $BENCH_RT_IDLE connections"
            md_row "Idle WebSocket connections held" "not measured: open-file limit $(ulimit -n)" "$(fmt_int "$BENCH_RT_IDLE") connections" "—" "**no**"
            return 0
        fi
    fi
    sleep 2
    before=$(rss_kb "$pid")
    : >"$out"
    timeout $((BENCH_RT_SETTLE + 700)) "$RT_LOAD" idle "$url" "$RT_TOKEN" "/live/sensors/$RT_IDLE_DEV" "$BENCH_RT_IDLE" \
        $((BENCH_RT_SETTLE + 3)) >"$out" 2>"$BENCH_OUT/realtime-idle.err" &
    local load_pid=$!
    for ((i = 0; i < 6500; i++)); do
        grep -q '"phase":"open"' "$out" && break
        alive "$load_pid" || break
        sleep 0.1
    done
    if ! grep -q '"phase":"open"' "$out"; then
        bench_log "realtime: idle connections never all opened; see $out"
        wait "$load_pid"
        return 1
    fi
    sleep "$BENCH_RT_SETTLE"
    after=$(rss_kb "$pid")
    local server_conns
    server_conns=$(rt_metric "$url" realtime_connections)
    local open failed opened_s reasons err
    read -r open failed opened_s <<<"$(rt_json "$out" 'd["connections_open"]' 'd["failed"]' 'd["open_seconds"]')"
    reasons=$(rt_json "$out" 'json.dumps(d["close_reasons"])')
    err=$(grep '"phase":"open"' "$out" | rt_json /dev/stdin 'd["first_error"]')
    wait "$load_pid"
    local per_kb
    per_kb=$(awk -v a="$after" -v b="$before" -v n="$open" 'BEGIN { if (n > 0) printf "%.1f\n", (a - b) / n; else print "nan" }')
    bench_log "realtime idle: $open open ($failed failed, opened in ${opened_s}s, server counts $server_conns), VmRSS $before -> $after kB, $per_kb KiB each; closes: $reasons; first error: $err"
    md_row "Idle authenticated WebSocket connections held (one subscription each)" \
        "$(fmt_int "$open") open after ${BENCH_RT_SETTLE} s (server: $(fmt_int "$server_conns"); $failed failed to open; all opened in $opened_s s)" \
        "10,000 connections" "$(ratio_pct "$open" 10000)% / ≥ 100%" "$(met "$open" ge 10000)"
    md_row "RSS per idle connection" "$per_kb KiB (VmRSS $(kb_to_mib "$before") → $(kb_to_mib "$after") MiB)" "30 KiB" \
        "$(ratio_pct "$per_kb" 30)% of limit / < 30 KiB" "$(met "$per_kb" lt 30)"
    [[ $failed == 0 ]] || bench_log "realtime idle: first open error: $err"
}

# rt_latency NAME LABEL LIMIT_MS URL[,URL2]: the latency row (and a delivery-errors row).
rt_latency() {
    local name=$1 label=$2 limit=$3 urls=$4 out=$BENCH_OUT/realtime-latency-$1.json
    timeout $((BENCH_RT_EVENTS * BENCH_RT_INTERVAL_MS / 1000 + 400)) "$RT_LOAD" latency "$urls" "$RT_TOKEN" "$RT_DEV" \
        "$RT_DEV_TOKEN" "$BENCH_RT_SUBSCRIBERS" "$BENCH_RT_EVENTS" "$BENCH_RT_INTERVAL_MS" \
        >"$out" 2>"$BENCH_OUT/realtime-latency-$name.err" || { bench_log "realtime_load latency failed, see $out"; return 1; }
    local subs acked perr samples p50 p99 max missing early gaps dups resets closed eps post99 send99 per
    read -r subs acked perr samples p50 p99 max missing early gaps dups resets closed eps post99 send99 <<<"$(rt_json "$out" \
        'd["subscribers"]' 'd["events_acked"]' 'd["post_errors"]' 'd["samples"]' 'd["p50_ms"]' 'd["p99_ms"]' 'd["max_ms"]' \
        'd["missing"]' 'd["early"]' 'd["gaps"]' 'd["duplicates"]' 'd["resets"]' 'd["closed"]' 'd["events_per_sec"]' \
        'd["post_p99_ms"]' 'd["from_send_p99_ms"]')"
    per=$(rt_json "$out" '"; ".join("instance %d: p50 %.1f / p99 %.1f ms" % (i + 1, x["p50_ms"], x["p99_ms"]) for i, x in enumerate(d["per_instance"])) if len(d["per_instance"]) > 1 else ""')
    [[ $per == - ]] && per=
    bench_log "realtime $name: $subs subscribers, $acked batches ($perr errors), p50 $p50 p99 $p99 max $max ms; missing $missing early $early gaps $gaps dups $dups resets $resets closed $closed; $eps msg/s; POST p99 $post99 ms, from the POST's start p99 $send99 ms; $per"
    md_row "$label: 202 → event at $(fmt_int "$subs") subscribers, p50 / p99" \
        "$p50 / $p99 ms (max $max; $(fmt_int "$samples") deliveries of $acked batches, one per $BENCH_RT_INTERVAL_MS ms, $(ratio_pct "$early" "$samples")% before the 202; from the POST's start instead: p99 $send99 ms, the 202 itself p99 $post99 ms${per:+; $per})" \
        "$limit ms" "p99 $(ratio_pct "$p99" "$limit")% of limit / < $limit ms" "$(met "$p99" lt "$limit")"
    local bad=$((missing + gaps + dups + resets + closed + perr + BENCH_RT_SUBSCRIBERS - subs))
    md_row "$label: deliveries missing, out of order or cut off" \
        "$missing missing, $gaps gaps, $dups repeats, $resets resets, $closed disconnects, $((BENCH_RT_SUBSCRIBERS - subs)) subscribers not opened, $perr POST errors" \
        "—" "0" "$(met "$bad" le 0)"
}

# rt_fanout URL: messages/s to the subscribers, then the same through a bare WebSocket broadcaster.
rt_fanout() {
    local url=$1 out=$BENCH_OUT/realtime-fanout.json ref=$BENCH_OUT/realtime-fanout-bare.json post_token
    # One device: its own token. Several: the admin, who may write for every device.
    if ((BENCH_RT_FANOUT_PATHS == 1)); then post_token=$RT_DEV_TOKEN; else post_token=$TEL_ADMIN_TOKEN; fi
    timeout $((BENCH_DURATION + 400)) "$RT_LOAD" fanout "$url" "$RT_TOKEN" "$RT_FANOUT_DEVS" "$post_token" \
        "$BENCH_RT_SUBSCRIBERS" "$BENCH_DURATION" "$BENCH_RT_POSTERS" "$BENCH_RT_WINDOW" \
        >"$out" 2>"$BENCH_OUT/realtime-fanout.err" || { bench_log "realtime_load fanout failed, see $out"; return 1; }
    local subs acked perr msgs expected eps posted bytes closed wait
    read -r subs acked perr msgs expected eps posted bytes closed wait <<<"$(rt_json "$out" 'd["subscribers"]' 'd["events_acked"]' \
        'd["post_errors"]' 'd["messages"]' 'd["expected_messages"]' 'd["events_per_sec"]' 'd["events_per_sec_posted"]' \
        'd["message_bytes"]' 'd["closed"]' '100 * d["poster_window_wait_share"]')"
    bench_log "realtime fanout: $subs subscribers x $BENCH_RT_FANOUT_PATHS paths, $acked batches ($perr errors, $posted/s), $msgs of $expected messages, $eps msg/s, $bytes bytes each, $closed closed, posters waited on the window ${wait}% of the time"
    local bport bpid i rsubs rmsgs rexpected reps rposted rwait
    bport=$(free_port) || return 1
    timeout $((BENCH_DURATION + 500)) "$RT_LOAD" bare-server "$bport" $((BENCH_DURATION + 400)) \
        >"$BENCH_OUT/realtime-bare-server.txt" 2>&1 &
    bpid=$!
    MASH_PIDS+=("$bpid")
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$bport") 2>/dev/null && break
        sleep 0.05
    done
    timeout $((BENCH_DURATION + 400)) "$RT_LOAD" bare-fanout "http://127.0.0.1:$bport" "$BENCH_RT_FANOUT_PATHS" "$BENCH_RT_SUBSCRIBERS" \
        "$BENCH_DURATION" "$BENCH_RT_POSTERS" "$BENCH_RT_WINDOW" "$bytes" >"$ref" 2>"$BENCH_OUT/realtime-fanout-bare.err"
    local rc=$?
    stop_mash "$bpid" 5
    ((rc == 0)) || { bench_log "realtime_load bare-fanout failed, see $ref"; return 1; }
    read -r rsubs rmsgs rexpected reps rposted rwait <<<"$(rt_json "$ref" 'd["subscribers"]' 'd["messages"]' 'd["expected_messages"]' \
        'd["events_per_sec"]' 'd["events_per_sec_posted"]' '100 * d["poster_window_wait_share"]')"
    bench_log "realtime fanout limit: bare broadcaster $rsubs subscribers, $rmsgs of $rexpected messages, $reps msg/s ($rposted publishes/s, window wait ${rwait}%)"
    md_row "Fan-out: event messages delivered per second, $(fmt_int "$subs") subscribers × $BENCH_RT_FANOUT_PATHS device paths" \
        "$(fmt_int "$eps") msg/s ($(fmt_int "$posted") batches/s of $BENCH_RT_FANOUT_PATHS readings; $bytes-byte messages; $(fmt_int "$msgs") of $(fmt_int "$expected") delivered; $closed disconnects; posters held by the window ${wait}% of the time)" \
        "bare tokio-tungstenite broadcaster, same subscribers, window and client: $(fmt_int "$reps") msg/s (window ${rwait}%)" \
        "$(ratio_pct "$eps" "$reps")% / ≥ 50%" "$(met "$(ratio_pct "$eps" "$reps")" ge 50)"
}

# rt_redis_start: RT_REDIS_URL from BENCH_REDIS_URL, or a private redis-server on a free port
# (RT_REDIS_PID; stopped by rt_redis_stop, or by the harness's cleanup at exit).
rt_redis_start() {
    RT_REDIS_URL='' RT_REDIS_PID=
    if [[ -n $BENCH_REDIS_URL ]]; then
        RT_REDIS_URL=$BENCH_REDIS_URL
        RT_REDIS_WHAT="given as BENCH_REDIS_URL"
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 || { bench_log "realtime: no redis-server; Redis rows skipped"; return 1; }
    local port i
    port=$(free_port) || return 1
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize no \
        --dir "$BENCH_TMP" >"$BENCH_OUT/realtime-redis.log" 2>&1 &
    RT_REDIS_PID=$!
    MASH_PIDS+=("$RT_REDIS_PID")
    for ((i = 0; i < 100; i++)); do
        alive "$RT_REDIS_PID" || break
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    if ! alive "$RT_REDIS_PID"; then
        bench_log "realtime: redis-server did not start; see $BENCH_OUT/realtime-redis.log"
        RT_REDIS_PID=
        return 1
    fi
    RT_REDIS_URL="redis://127.0.0.1:$port"
    RT_REDIS_WHAT="a private redis-server $(redis-server --version | awk '{ print $3 }' | tr -d 'v=') with persistence off, started for this scenario"
}

rt_redis_stop() {
    [[ -n ${RT_REDIS_PID:-} ]] && stop_mash "$RT_REDIS_PID" 5
    RT_REDIS_PID=
}

scenario_run() {
    RT_LOAD=$(example_bin realtime_load) || { bench_log "cannot build realtime_load"; return 1; }
    local db_url port pid url data=$BENCH_TMP/rt-data
    db_url=$(fresh_pg_db "${BENCH_DB}_realtime") || return 1
    local common=(DATABASE_URL="$db_url" MASH_DATA_DIR="$data" RUST_LOG="${RUST_LOG:-warn}" ACCESS_TOKEN_TTL_SECS=3600 "${MASH_EXTRA_ENV[@]}")
    port=$(free_port) || return 1
    telemetry_mash rt "$BENCH_TMP/rt-1" "$port" "${common[@]}" || return 1
    pid=$MASH_PID
    wait_ready "$port" 60 "$pid" || { stop_mash "$pid" 5; return 1; }
    url="http://127.0.0.1:$port"
    rt_setup "$url" || { stop_mash "$pid" 5; return 1; }

    rt_idle "$url" "$pid" || { stop_mash "$pid" 10; return 1; }
    sleep 2
    rt_latency one "One instance" 100 "$url" || { stop_mash "$pid" 10; return 1; }
    rt_fanout "$url" || { stop_mash "$pid" 10; return 1; }
    curl -s --max-time 10 "$url/metrics" | grep '^realtime_' >"$BENCH_OUT/realtime-metrics-one.txt"
    stop_mash "$pid" 10 || true

    rt_redis_start
    if [[ -z $RT_REDIS_URL ]]; then
        md_row "Two instances + Redis: 202 → event" "not measured: no Redis" "150 ms" "—" "**no**"
        return 0
    fi
    local port_a port_b pid_a pid_b
    port_a=$(free_port) || return 1
    start_mash rt-a "$BENCH_TMP/rt-a" "$port_a" "${common[@]}" REDIS_URL="$RT_REDIS_URL"
    pid_a=$MASH_PID
    port_b=$(free_port) || return 1
    start_mash rt-b "$BENCH_TMP/rt-b" "$port_b" "${common[@]}" REDIS_URL="$RT_REDIS_URL"
    pid_b=$MASH_PID
    if wait_ready "$port_a" 60 "$pid_a" && wait_ready "$port_b" 60 "$pid_b"; then
        rt_latency two "Two instances + Redis" 150 "http://127.0.0.1:$port_a,http://127.0.0.1:$port_b" ||
            { stop_mash "$pid_a" 10; stop_mash "$pid_b" 10; rt_redis_stop; return 1; }
        curl -s --max-time 10 "http://127.0.0.1:$port_a/metrics" | grep '^realtime_' >"$BENCH_OUT/realtime-metrics-two-a.txt"
        curl -s --max-time 10 "http://127.0.0.1:$port_b/metrics" | grep '^realtime_' >"$BENCH_OUT/realtime-metrics-two-b.txt"
    else
        stop_mash "$pid_a" 5; stop_mash "$pid_b" 5; rt_redis_stop
        return 1
    fi
    stop_mash "$pid_a" 10 || true
    stop_mash "$pid_b" 10 || true
    rt_redis_stop
}
