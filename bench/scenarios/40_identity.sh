# shellcheck shell=bash
# shellcheck disable=SC2034  # SCENARIO_* are read by run.sh
# Identity on PostgreSQL: an authenticated read (`GET /users/me`: token check with no database
# round trip for revocation, then one user lookup) against `/health/ready` (one trivial round
# trip), and password logins per second per core against argon2id's own rate on one core.
SCENARIO_TITLE="Identity: authenticated reads and logins (PostgreSQL)"
SCENARIO_NEEDS_PG=1

: "${BENCH_LOGIN_CONNECTIONS:=8}"

scenario_how() {
    echo "A second mash on the same PostgreSQL database with AUTH_RATE_LIMIT_PER_MINUTE and LOGIN_LOCKOUT_THRESHOLD raised so the load is not refused, and RUST_LOG=${RUST_LOG:-warn} (no access line on either side of the ratio: /health/ready logs its line at debug). One user is registered; wrk -c $BENCH_CONNECTIONS GET /api/v1/users/me with its bearer token, then GET /health/ready with the same load; ratio = users/me ÷ ready. Logins: wrk -c $BENCH_LOGIN_CONNECTIONS POST /api/v1/auth/login (bench/wrk/login.lua), logins/s ÷ $(nproc) cores, against \`cargo run --release --example argon2_rate\` (argon2id m=19 MiB, t=2, p=1; one verifying thread per core at once, as the loaded server runs; verifications/s/core) run right before."
}

scenario_run() {
    local port dir=$BENCH_TMP/identity pid url token w me_rps ready_rps me_p99 err non2xx pct
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
    w=$(wrk_run users_me "$url/api/v1/users/me" -H "Authorization: Bearer $token") || { stop_mash "$pid" 5; return 1; }
    read -r me_rps _ me_p99 err non2xx <<<"$w"
    ready_rps=$(wrk_rps identity_ready "$url/health/ready") || { stop_mash "$pid" 5; return 1; }
    pct=$(ratio_pct "$me_rps" "$ready_rps")
    bench_log "identity: users/me $me_rps req/s, ready $ready_rps req/s ($pct%)"
    md_row "GET /api/v1/users/me (valid token)" "$(fmt_int "$me_rps") req/s" "GET /health/ready, same load: $(fmt_int "$ready_rps") req/s" "${pct}% / ≥ 70%" "$(met "$pct" ge 70)"
    md_row "users/me p99 latency; errors" "$me_p99 ms; $((err + non2xx))" "—" "(information)" "$(met "$((err + non2xx))" le 0)"

    local hash_rate cores login_rps per_core lpct
    hash_rate=$(cd "$REPO_ROOT" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target} \
        cargo run -q --release --example argon2_rate -- 5 2>/dev/null) || { stop_mash "$pid" 5; return 1; }
    cores=$(nproc)
    w=$(BENCH_LOGIN_BODY="{\"email\":\"$email\",\"password\":\"$password\"}" \
        wrk_run login "$url/api/v1/auth/login" -c "$BENCH_LOGIN_CONNECTIONS" -s "$BENCH_DIR/wrk/login.lua") || { stop_mash "$pid" 5; return 1; }
    read -r login_rps _ _ err non2xx <<<"$w"
    per_core=$(awk -v r="$login_rps" -v c="$cores" 'BEGIN { printf "%.2f", r / c }')
    lpct=$(ratio_pct "$per_core" "$hash_rate")
    bench_log "identity: login $login_rps/s ($per_core/s/core), argon2 $hash_rate/s/core ($lpct%)"
    md_row "POST /api/v1/auth/login" "$per_core logins/s/core ($login_rps/s on $cores cores)" "argon2id verify, $cores threads at once: $hash_rate/s/core" "${lpct}% / ≥ 90%" "$(met "$lpct" ge 90)"
    md_row "Login errors (socket + non-2xx)" "$((err + non2xx))" "—" "0" "$(met "$((err + non2xx))" le 0)"
    # Each hash needs 19 MiB of working memory; one buffer per hashing slot is reused, so the
    # peak stays near idle + cores × 19 MiB however long the burst lasts.
    md_row "Peak RSS after the login load (VmHWM)" "$(kb_to_mib "$(hwm_kb "$pid")") MiB" "idle + $cores × 19 MiB" "(information)" "—"
    stop_mash "$pid" 10 || true
}
