# shellcheck shell=bash
# shellcheck disable=SC2034  # SCENARIO_* are read by run.sh
# Resident memory of an idle server on SQLite: what a small install (a Raspberry Pi in the
# greenhouse, the smallest cloud instance) pays just to have Mash running.
SCENARIO_TITLE="Idle memory (SQLite)"

scenario_how() {
    echo "mash serve on a fresh SQLite data directory, wait for /health/ready, 20 more GET /health/ready, sleep 2 s, then VmRSS (and VmHWM, the peak) from /proc/PID/status. 1 MiB = 1024 kB."
}

scenario_run() {
    local port dir=$BENCH_TMP/idle-rss i rss hwm mib
    port=$(free_port) || return 1
    start_mash idle_rss "$dir" "$port" "${MASH_EXTRA_ENV[@]}"
    local pid=$MASH_PID
    wait_ready "$port" 60 "$pid" || { stop_mash "$pid" 5; return 1; }
    for ((i = 0; i < 20; i++)); do
        curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/health/ready"
    done
    sleep 2
    rss=$(rss_kb "$pid"); hwm=$(hwm_kb "$pid")
    stop_mash "$pid" 10 || bench_log "idle_rss: mash needed SIGKILL to stop"
    [[ -n $rss ]] || return 1
    mib=$(kb_to_mib "$rss")
    bench_log "idle_rss: VmRSS $rss kB, VmHWM $hwm kB"
    md_row "Idle RSS (VmRSS)" "$mib MiB" "25 MiB" "$(ratio_pct "$mib" 25)% of limit / < 25 MiB" "$(met "$mib" lt 25)"
    md_row "Peak RSS so far (VmHWM)" "$(kb_to_mib "$hwm") MiB" "—" "(information)" "—"
}
