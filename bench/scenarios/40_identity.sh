# shellcheck shell=bash
# shellcheck disable=SC2034  # SCENARIO_* are read by run.sh
# Identity on PostgreSQL: an authenticated read (`GET /users/me`: token check with no database
# round trip for revocation, then the user lookup, batched with concurrent ones) against
# `/health/ready` (one trivial round trip), and password logins per second per core against
# argon2id's own rate on one core.
SCENARIO_TITLE="Identity: authenticated reads and logins (PostgreSQL)"
SCENARIO_NEEDS_PG=1

: "${BENCH_LOGIN_CONNECTIONS:=8}"
: "${BENCH_IDENTITY_ROUNDS:=3}"

# median_of N...: the middle value (the mean of the two middle ones for an even count).
median_of() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

scenario_how() {
    echo "A second mash on the same PostgreSQL database with AUTH_RATE_LIMIT_PER_MINUTE and LOGIN_LOCKOUT_THRESHOLD raised so the load is not refused, and RUST_LOG=${RUST_LOG:-warn} (no access line on either side of the ratio: /health/ready logs its line at debug). One user is registered; wrk -c $BENCH_CONNECTIONS GET /api/v1/users/me with its bearer token, then GET /health/ready with the same load, $BENCH_IDENTITY_ROUNDS times in alternation; ratio = the median of the $BENCH_IDENTITY_ROUNDS users/me ÷ ready ratios (the range is shown beside it; this machine's speed drifts by 10-15% over minutes, which alternating pairs cancel). Logins: wrk -c $BENCH_LOGIN_CONNECTIONS POST /api/v1/auth/login (bench/wrk/login.lua); logins/s ÷ the cores mash kept busy (its user + system CPU time over the run from /proc/PID/stat ÷ the run's length: PostgreSQL and wrk run on the same cores here, and a deployment gives PostgreSQL its own), and, for information, logins/s ÷ $(nproc) machine cores; both against \`cargo run --release --example argon2_rate\` (argon2id m=19 MiB, t=2, p=1; one verifying thread per core at once, as the loaded server runs, each in the working memory the server's hashing threads use, huge pages included; verifications/s/core) run right before each login run, $BENCH_IDENTITY_ROUNDS pairs; ratio = the median of the pairs' ratios. Information rows: reads per query for the user view from /metrics after the users/me rounds (concurrent reads share batched queries), and users/me against /health/ready at one connection (wrk -t 1 -c 1, $BENCH_DURATION s each), where nothing is batched."
}

scenario_run() {
    local port dir=$BENCH_TMP/identity pid url token w me_rps ready_rps me_p99 err non2xx pct one_me_p50 one_ready_p50
    port=$(free_port) || return 1
    start_mash identity "$dir" "$port" DATABASE_URL="$MASH_PG_URL" AUTH_RATE_LIMIT_PER_MINUTE=100000000 \
        LOGIN_LOCKOUT_THRESHOLD=100 RUST_LOG="${RUST_LOG:-warn}" "${MASH_EXTRA_ENV[@]}"
    pid=$MASH_PID
    wait_ready "$port" 60 "$pid" || { stop_mash "$pid" 5; return 1; }
    url="http://127.0.0.1:$port"
    local email="bench-$RANDOM@example.com" password="bench passphrase 2026"
    token=$(curl -s --max-time 10 -H 'content-type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Bench\"}" "$url/api/v1/auth/register" |
        sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
    [[ -n $token ]] || { bench_log "identity: registration failed"; stop_mash "$pid" 5; return 1; }

    BENCH_DURATION=2 wrk_run identity-warmup "$url/api/v1/users/me" -H "Authorization: Bearer $token" >/dev/null || return 1
    local round ratios=() mes=() readies=() p99s=() errors=0
    for ((round = 1; round <= BENCH_IDENTITY_ROUNDS; round++)); do
        w=$(wrk_run "users_me-$round" "$url/api/v1/users/me" -H "Authorization: Bearer $token") || { stop_mash "$pid" 5; return 1; }
        read -r me_rps _ me_p99 err non2xx <<<"$w"
        ready_rps=$(wrk_rps "identity_ready-$round" "$url/health/ready") || { stop_mash "$pid" 5; return 1; }
        mes+=("$me_rps") readies+=("$ready_rps") p99s+=("$me_p99") ratios+=("$(ratio_pct "$me_rps" "$ready_rps")")
        errors=$((errors + err + non2xx))
        bench_log "identity: round $round: users/me $me_rps req/s, ready $ready_rps req/s (${ratios[-1]}%)"
    done
    pct=$(median_of "${ratios[@]}")
    md_row "GET /api/v1/users/me (valid token), median of $BENCH_IDENTITY_ROUNDS" "$(fmt_int "$(median_of "${mes[@]}")") req/s" "GET /health/ready, same load, alternating: $(fmt_int "$(median_of "${readies[@]}")") req/s" "${pct}% (pairs: $(IFS=/; echo "${ratios[*]}")%) / ≥ 70%" "$(met "$pct" ge 70)"
    md_row "users/me p99 latency (median); errors" "$(median_of "${p99s[@]}") ms; $errors" "—" "(information)" "$(met "$errors" le 0)"
    # Concurrent reads share batched queries (src/db/batch.rs); /metrics counts both.
    local reads queries
    read -r reads queries <<<"$(curl -s --max-time 10 "$url/metrics" | awk '
        $1 == "db_batched_reads_total{read=\"user_views\"}" { r = $2 }
        $1 == "db_batch_queries_total{read=\"user_views\"}" { q = $2 }
        END { print r, q }')"
    md_row "users/me reads per query at $BENCH_CONNECTIONS connections (db_batched_reads_total ÷ db_batch_queries_total)" "$(awk -v r="${reads:-0}" -v q="${queries:-0}" 'BEGIN { if (q > 0) printf "%.2f", r / q; else print "?" }') ($(fmt_int "${reads:-0}") reads)" "—" "(information)" "—"
    # One connection: nothing to batch; each read is its own query, as before batching.
    local one_me one_ready
    read -r one_me one_me_p50 _ <<<"$(wrk_run users_me-c1 "$url/api/v1/users/me" -t 1 -c 1 -H "Authorization: Bearer $token")" || { stop_mash "$pid" 5; return 1; }
    read -r one_ready one_ready_p50 _ <<<"$(wrk_run identity_ready-c1 "$url/health/ready" -t 1 -c 1)" || { stop_mash "$pid" 5; return 1; }
    md_row "users/me at 1 connection (no batching), p50" "$(fmt_int "$one_me") req/s, ${one_me_p50} ms" "GET /health/ready at 1 connection: $(fmt_int "$one_ready") req/s, ${one_ready_p50} ms" "$(ratio_pct "$one_me" "$one_ready")% (information)" "—"

    local hash_rate cores login_rps per_core lpct lratios=() logins=() hashes=() cpu0 cpu1 used mash_core mpct
    local mratios=() mash_logins=() used_cores=() tick
    cores=$(nproc)
    tick=$(getconf CLK_TCK)
    errors=0
    local argon2_rate
    argon2_rate=$(example_bin argon2_rate) || { stop_mash "$pid" 5; return 1; }
    for ((round = 1; round <= BENCH_IDENTITY_ROUNDS; round++)); do
        hash_rate=$("$argon2_rate" 5 2>/dev/null) || { stop_mash "$pid" 5; return 1; }
        cpu0=$(cpu_ticks "$pid")
        w=$(BENCH_LOGIN_BODY="{\"email\":\"$email\",\"password\":\"$password\"}" \
            wrk_run "login-$round" "$url/api/v1/auth/login" -c "$BENCH_LOGIN_CONNECTIONS" -s "$BENCH_DIR/wrk/login.lua") || { stop_mash "$pid" 5; return 1; }
        cpu1=$(cpu_ticks "$pid")
        read -r login_rps _ _ err non2xx <<<"$w"
        errors=$((errors + err + non2xx))
        # The cores mash itself kept busy (its user + system CPU time over the run).
        used=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$tick" -v d="$BENCH_DURATION" 'BEGIN { printf "%.3f", (b - a) / t / d }')
        per_core=$(awk -v r="$login_rps" -v c="$cores" 'BEGIN { printf "%.2f", r / c }')
        mash_core=$(awk -v r="$login_rps" -v c="$used" 'BEGIN { printf "%.2f", (c > 0 ? r / c : 0) }')
        logins+=("$per_core") hashes+=("$hash_rate") lratios+=("$(ratio_pct "$per_core" "$hash_rate")")
        mash_logins+=("$mash_core") used_cores+=("$used") mratios+=("$(ratio_pct "$mash_core" "$hash_rate")")
        bench_log "identity: round $round: login $login_rps/s ($per_core/s per machine core; $mash_core/s per core of mash's CPU, $used cores), argon2 $hash_rate/s/core (${lratios[-1]}% / ${mratios[-1]}%)"
    done
    lpct=$(median_of "${lratios[@]}")
    mpct=$(median_of "${mratios[@]}")
    md_row "POST /api/v1/auth/login, median of $BENCH_IDENTITY_ROUNDS, per core of mash's own CPU time" "$(median_of "${mash_logins[@]}") logins/s/core (mash kept $(median_of "${used_cores[@]}") cores busy)" "argon2id verify, $cores threads at once, right before each: $(median_of "${hashes[@]}")/s/core" "${mpct}% (pairs: $(IFS=/; echo "${mratios[*]}")%) / ≥ 90%" "$(met "$mpct" ge 90)"
    md_row "The same logins per machine core (PostgreSQL and wrk share the $cores cores here)" "$(median_of "${logins[@]}") logins/s/core" "the same argon2id rate" "${lpct}% (pairs: $(IFS=/; echo "${lratios[*]}")%) (information)" "—"
    md_row "Login errors (socket + non-2xx)" "$errors" "—" "0" "$(met "$errors" le 0)"
    # Each hash needs 19 MiB of working memory; one buffer per hashing slot is reused, so the
    # peak stays near idle + cores × 19 MiB however long the burst lasts.
    md_row "Peak RSS after the login load (VmHWM)" "$(kb_to_mib "$(hwm_kb "$pid")") MiB" "idle + $cores × 19 MiB" "(information)" "—"
    stop_mash "$pid" 10 || true
}
