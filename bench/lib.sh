# shellcheck shell=bash
# shellcheck disable=SC2034,SC2153  # globals are set here and read by run.sh / scenarios, or the reverse
# Helpers shared by bench/run.sh and bench/scenarios/*.sh. Sourced, never executed.
#
# Conventions:
#   - Helpers print their result on stdout and log progress on stderr (bench_log).
#   - Raw tool output (wrk, pgbench, mash logs) goes under $BENCH_OUT so figures can be checked.
#   - Everything listens on and talks to 127.0.0.1 only; every external tool runs under `timeout`.

# ---------------------------------------------------------------------------
# Logging and small utilities
# ---------------------------------------------------------------------------

bench_log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
bench_die() { bench_log "ERROR: $*"; exit 1; }

# now_ns: wall clock in nanoseconds, like `date +%s%N` but without a fork (bash 5
# $EPOCHREALTIME has microsecond resolution).
now_ns() {
    local t=$EPOCHREALTIME
    echo "${t//[.,]/}000"
}
# now_ns_into VAR: the same into a variable, without the fork of $(now_ns).
now_ns_into() {
    local t=$EPOCHREALTIME
    printf -v "$1" '%s000' "${t//[.,]/}"
}

# alive PID: the process exists and is not a zombie (a child that exited is a zombie until
# its parent reaps it, and kill -0 still succeeds on a zombie).
alive() {
    local _pid _comm state
    kill -0 "$1" 2>/dev/null || return 1
    read -r _pid _comm state _ <"/proc/$1/stat" 2>/dev/null || return 1
    [[ $state != Z ]]
}

# free_port: a TCP port on 127.0.0.1 that no socket uses (random pick in 20000-32767, below the
# kernel's ephemeral range, so the thousands of client sockets a load run leaves behind cannot
# hold it).
free_port() {
    local p i
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 12768))
        if command -v ss >/dev/null 2>&1; then
            ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q . && continue
        fi
        # A refused connection means the port is free.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# median N...: median of the numbers (mean of the two middle values for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2];
        else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# max N...: largest of the numbers.
max() { printf '%s\n' "$@" | sort -g | tail -n 1; }

# ratio_pct A B: A / B as a percentage with one decimal ("nan" when B is 0 or missing).
ratio_pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.1f\n", 100 * a / b }'; }

# fmt_int N: 12345.6 -> 12,346 (thousands separators, no locale needed).
fmt_int() {
    awk -v n="$1" 'BEGIN {
        if (n == "" || n == "nan") { print "n/a"; exit }
        s = sprintf("%.0f", n); out = ""; neg = ""
        if (substr(s, 1, 1) == "-") { neg = "-"; s = substr(s, 2) }
        while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
        print neg s out }'
}

# cmp_ok A OP B: exit 0 when the comparison holds (OP one of: ge gt le lt), numerically.
cmp_ok() {
    awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
        if (a == "" || a == "nan" || b == "" || b == "nan") exit 1
        a += 0; b += 0
        if (op == "ge") exit !(a >= b); if (op == "gt") exit !(a > b)
        if (op == "le") exit !(a <= b); if (op == "lt") exit !(a < b)
        exit 1 }'
}

# met A OP B: "yes" / "**no**" for the Met? column.
met() { if cmp_ok "$@"; then echo "yes"; else echo "**no**"; fi; }

# md_row CELL...: one Markdown table row.
md_row() {
    local out="|" c
    for c in "$@"; do out+=" ${c//|/\\|} |"; done
    echo "$out"
}

# ---------------------------------------------------------------------------
# The mash process
# ---------------------------------------------------------------------------
# start_mash NAME WORKDIR PORT [VAR=value...]
#   Starts `$MASH_BIN serve` in WORKDIR (so the default ./data/mash.db lands there) on
#   127.0.0.1:PORT with the given extra environment, stdout/stderr to $BENCH_OUT/mash-NAME.log.
#   Redis and MQTT are switched off unless passed explicitly, so only the database is measured.
#   Sets MASH_PID and MASH_LOG. Every started pid is remembered for cleanup_mash.
MASH_PIDS=()
start_mash() {
    local name=$1 workdir=$2 port=$3
    shift 3
    mkdir -p "$workdir"
    (
        cd "$workdir" || exit 1
        unset REDIS_URL MQTT_URL DATABASE_URL
        exec env HOST=127.0.0.1 PORT="$port" LOG_FORMAT="${BENCH_LOG_FORMAT:-json}" "$@" \
            "$MASH_BIN" serve
    ) >>"$BENCH_OUT/mash-$name.log" 2>&1 &
    MASH_PID=$!
    MASH_LOG=$BENCH_OUT/mash-$name.log
    MASH_PIDS+=("$MASH_PID")
}

# show_log_tail: the last lines of the most recently started mash's log, on stderr.
show_log_tail() {
    [[ -n ${MASH_LOG:-} && -f $MASH_LOG ]] || return 0
    bench_log "last lines of $MASH_LOG:"
    tail -n 20 "$MASH_LOG" | sed 's/^/    /' >&2
}

# wait_ready PORT [TIMEOUT_S] [PID]: poll /health/ready until 200. Fails on timeout or when
# PID (if given) exits first.
wait_ready() {
    local port=$1 timeout_s=${2:-60} pid=${3:-}
    local deadline=$(($(date +%s) + timeout_s))
    while (($(date +%s) < deadline)); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health/ready") == 200 ]]; then
            return 0
        fi
        if [[ -n $pid ]] && ! alive "$pid"; then
            bench_log "mash (pid $pid) exited before becoming ready"
            show_log_tail
            return 1
        fi
        sleep 0.05
    done
    bench_log "mash on port $port not ready after ${timeout_s}s"
    show_log_tail
    return 1
}

# probe_ready PORT: one GET /health/ready over bash's /dev/tcp (no fork, so it can be polled
# every ~2 ms); exit 0 on a 200. Used where timing matters; elsewhere curl is fine.
probe_ready() {
    local fd line
    { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$1" >&"$fd"
    IFS= read -r -t 2 line <&"$fd"
    exec {fd}>&-
    [[ $line == "HTTP/1."[01]" 200"* ]]
}

# sleep_2ms: a 2 ms pause without forking sleep(1) (read with a timeout on a pipe that
# never gets data).
sleep_2ms() {
    [[ -n ${_SLEEP_FD:-} ]] || exec {_SLEEP_FD}<> <(:)
    read -r -t 0.002 -u "$_SLEEP_FD" _ || true
}

# time_to_ready PORT PID T0_NS [TIMEOUT_S]: poll /health/ready every ~2 ms (probe_ready, then
# a 2 ms pause: one cycle is ~2-3 ms); print the milliseconds (one decimal) from T0_NS to the
# first 200. T0_NS should come from now_ns taken just before starting mash.
time_to_ready() {
    local port=$1 pid=$2 t0=$3 timeout_s=${4:-30} t1 now
    local limit_ns=$((timeout_s * 1000000000))
    while :; do
        if probe_ready "$port"; then
            now=$EPOCHREALTIME
            t1=${now//[.,]/}000
            awk -v d="$((t1 - t0))" 'BEGIN { printf "%.1f\n", d / 1e6 }'
            return 0
        fi
        now=$EPOCHREALTIME
        t1=${now//[.,]/}000
        if ! alive "$pid"; then
            bench_log "mash (pid $pid) exited before becoming ready"
            show_log_tail
            return 1
        fi
        if ((t1 - t0 > limit_ns)); then
            bench_log "mash (pid $pid) not ready after ${timeout_s}s"
            show_log_tail
            return 1
        fi
        sleep_2ms
    done
}

# stop_mash PID [TIMEOUT_S]: SIGTERM, wait for exit (SIGKILL after TIMEOUT_S, default 10).
# Returns 0 when it exited within TIMEOUT_S of SIGTERM, 1 when it had to be killed. Sets
# STOP_STATUS to the exit status (0 for a graceful shutdown, 143 = killed by the SIGTERM itself).
stop_mash() {
    local pid=$1 timeout_s=${2:-10} i
    STOP_STATUS=
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < timeout_s * 20; i++)); do
            alive "$pid" || break
            sleep 0.05
        done
    fi
    if alive "$pid"; then
        bench_log "mash (pid $pid) ignored SIGTERM for ${timeout_s}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        STOP_STATUS=$?
        return 1
    fi
    wait "$pid" 2>/dev/null
    STOP_STATUS=$?
    return 0
}

# cleanup_mash: stop every mash this run started that is still alive (EXIT trap).
cleanup_mash() {
    local pid
    for pid in "${MASH_PIDS[@]}"; do
        if alive "$pid"; then stop_mash "$pid" 5 || true; fi
    done
}

# trim_logs: mash logs one line per request at the default level, so a load run leaves
# tens of MB; keep the first and last 200 lines of any log over 5 MB.
trim_logs() {
    local f n
    for f in "$BENCH_OUT"/mash-*.log; do
        [[ -f $f ]] || continue
        (($(stat -c %s "$f") > 5 * 1024 * 1024)) || continue
        n=$(wc -l <"$f")
        { head -n 200 "$f"; echo "... [bench: $((n - 400)) lines cut] ..."; tail -n 200 "$f"; } >"$f.tmp" && mv "$f.tmp" "$f"
    done
}

# rss_kb PID: resident set size (VmRSS) in kB. hwm_kb PID: peak RSS (VmHWM) in kB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# cpu_ticks PID: the process's user + system CPU time so far, in clock ticks (getconf CLK_TCK).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
kb_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; }

# ---------------------------------------------------------------------------
# Load generators
# ---------------------------------------------------------------------------
# wrk_run NAME URL: wrk for BENCH_DURATION s at BENCH_CONNECTIONS connections, BENCH_THREADS
# threads, raw output in $BENCH_OUT/wrk-NAME.txt. Prints "RPS P50_MS P99_MS ERRORS NON2XX".
wrk_run() {
    # Extra arguments after the URL go to wrk (headers, -s script, -c override).
    local name=$1 url=$2 out="$BENCH_OUT/wrk-$1.txt"
    shift 2
    timeout $((BENCH_DURATION + 30)) wrk -t "$BENCH_THREADS" -c "$BENCH_CONNECTIONS" \
        -d "${BENCH_DURATION}s" --timeout 5s --latency "$@" "$url" >"$out" 2>&1 || {
        bench_log "wrk failed, see $out"
        return 1
    }
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000; return v }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { non2xx = $5 }
        END {
            if (rps == "") exit 1
            printf "%s %.2f %.2f %d %d\n", rps, p50, p99, err, non2xx }' "$out"
}

# wrk_rps NAME URL: just the requests per second.
wrk_rps() { wrk_run "$@" | awk '{ print $1 }'; }

# pgbench_tps NAME SCRIPT [DBNAME]: pgbench on the custom SCRIPT with the same concurrency
# as wrk (-c BENCH_CONNECTIONS -j BENCH_THREADS -T BENCH_DURATION -M BENCH_PGBENCH_MODE,
# -n: no vacuum, no pgbench tables needed). Raw output in $BENCH_OUT/pgbench-NAME.txt.
# Prints tps excluding connection set-up time.
pgbench_tps() {
    local name=$1 script=$2 db=${3:-$BENCH_DB} out="$BENCH_OUT/pgbench-$1.txt"
    timeout $((BENCH_DURATION + 30)) pgbench -h "$BENCH_PGHOST" -p "$BENCH_PGPORT" -U "$BENCH_PGUSER" \
        -n -M "$BENCH_PGBENCH_MODE" -c "$BENCH_CONNECTIONS" -j "$BENCH_THREADS" \
        -T "$BENCH_DURATION" -f "$script" "$db" >"$out" 2>&1 || {
        bench_log "pgbench failed, see $out"
        return 1
    }
    # PostgreSQL 14+: "tps = N (without initial connection time)"; older: "(excluding connections establishing)".
    awk '/^tps = / && /(without initial connection time|excluding connections)/ { print $3; found = 1 }
         END { exit !found }' "$out"
}

# psql_admin SQL: run SQL against the maintenance database of the benchmark server.
psql_admin() {
    PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" psql -h "$BENCH_PGHOST" -p "$BENCH_PGPORT" -U "$BENCH_PGUSER" -d postgres \
        -v ON_ERROR_STOP=1 -qAtX -c "$1"
}

# psql_db DB ARGS...: psql on database DB of the benchmark server (unaligned tuples only, no
# psqlrc, stopping at the first error).
psql_db() {
    local db=$1
    shift
    psql -h "$BENCH_PGHOST" -p "$BENCH_PGPORT" -U "$BENCH_PGUSER" -d "$db" -qAtX -v ON_ERROR_STOP=1 "$@"
}

# fresh_pg_db NAME: drops and re-creates database NAME on the benchmark server; prints its URL.
fresh_pg_db() {
    psql_admin "DROP DATABASE IF EXISTS $1 WITH (FORCE)" && psql_admin "CREATE DATABASE $1" || return 1
    echo "postgres://$BENCH_PGUSER@$BENCH_PGHOST:$BENCH_PGPORT/$1"
}

# ---------------------------------------------------------------------------
# Telemetry scenarios
# ---------------------------------------------------------------------------
: "${BENCH_INGEST_CONNECTIONS:=8}"

# telemetry_setup NAME URL: admin login, a grower and BENCH_INGEST_CONNECTIONS + 1 devices.
# Writes "<id> <token>" lines to $BENCH_TMP/devices-NAME.txt (the last line is the history
# device) and sets TEL_ADMIN_TOKEN.
telemetry_setup() {
    local name=$1 url=$2 grower i body
    TEL_ADMIN_TOKEN=$(curl -s --max-time 10 -H 'content-type: application/json' \
        -d '{"email":"bench-admin@example.com","password":"bench admin passphrase 2026"}' "$url/api/v1/auth/login" |
        sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
    [[ -n $TEL_ADMIN_TOKEN ]] || { bench_log "telemetry: admin login failed"; return 1; }
    grower=$(curl -s --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" -H 'content-type: application/json' \
        -d '{"name":"Bench grower"}' "$url/api/v1/growers" | sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
    [[ -n $grower ]] || { bench_log "telemetry: grower creation failed"; return 1; }
    : >"$BENCH_TMP/devices-$name.txt"
    for ((i = 0; i <= BENCH_INGEST_CONNECTIONS; i++)); do
        body=$(curl -s --max-time 10 -H "authorization: Bearer $TEL_ADMIN_TOKEN" -H 'content-type: application/json' \
            -d "{\"growerId\":\"$grower\",\"name\":\"bench device $i\"}" "$url/api/v1/devices")
        printf '%s %s\n' "$(sed -n 's/.*"device":{"id":"\([^"]*\)".*/\1/p' <<<"$body")" \
            "$(sed -n 's/.*"deviceToken":"\([^"]*\)".*/\1/p' <<<"$body")" >>"$BENCH_TMP/devices-$name.txt"
    done
    [[ $(grep -c '^[0-9a-f-]\{36\} mdt_' "$BENCH_TMP/devices-$name.txt") -eq $((BENCH_INGEST_CONNECTIONS + 1)) ]] ||
        { bench_log "telemetry: device creation failed"; return 1; }
}

# telemetry_mash NAME WORKDIR PORT [VAR=value...]: seeds the bench admin into the database
# (`mash seed`, which also migrates), then starts mash like start_mash.
telemetry_mash() {
    local name=$1 dir=$2 port=$3
    shift 3
    mkdir -p "$dir"
    (
        cd "$dir" || exit 1
        unset REDIS_URL MQTT_URL DATABASE_URL
        exec env LOG_FORMAT=json RUST_LOG=warn MASH_SEED_ADMIN_EMAIL=bench-admin@example.com \
            MASH_SEED_ADMIN_PASSWORD="bench admin passphrase 2026" "$@" "$MASH_BIN" seed
    ) >>"$BENCH_OUT/mash-$name.log" 2>&1 || { bench_log "$name: mash seed failed"; return 1; }
    start_mash "$name" "$dir" "$port" "$@"
}

# example_bin NAME: builds examples/NAME.rs (release) and prints its path. With
# BENCH_PREBUILT=1 the examples already built are used as they are.
example_bin() {
    local bin=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/examples/$1
    if [[ ${BENCH_PREBUILT:-0} != 1 ]]; then
        (cd "$REPO_ROOT" && cargo build -q --release --example "$1") >&2 || return 1
    fi
    [[ -x $bin ]] || return 1
    echo "$bin"
}

# ingest_load_bin: builds examples/ingest_load.rs (release) once and prints its path.
ingest_load_bin() { example_bin ingest_load; }
