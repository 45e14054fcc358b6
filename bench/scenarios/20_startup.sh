# shellcheck shell=bash
# shellcheck disable=SC2034  # SCENARIO_* are read by run.sh
# Time from exec to the first 200 on /health/ready, on SQLite: once on an empty data directory
# (database created and every migration applied) and once on an already-migrated file.
SCENARIO_TITLE="Startup time to ready (SQLite)"

scenario_how() {
    echo "wall clock (ns, as \`date +%s%N\`) just before starting \`mash serve\` in a work directory (default DATABASE_URL, i.e. ./data/mash.db), then GET /health/ready every ~2 ms (bash /dev/tcp probe, no fork per poll) until the first 200; $BENCH_STARTUP_RUNS runs each, every run stopped with SIGTERM. Fresh = a new empty directory each run (the data directory and database are created and all migrations run); migrated = the same directory re-used after a first, unmeasured start. Resolution: one poll cycle (~2-3 ms)."
}

# startup_once NAME WORKDIR: start mash in WORKDIR, set STARTUP_MS to ms until ready, stop it.
# (Runs in the calling shell, not in $(...), so the pid stays known to the EXIT trap.)
startup_once() {
    local name=$1 dir=$2 port t0
    STARTUP_MS=
    port=$(free_port) || return 1
    now_ns_into t0
    start_mash "$name" "$dir" "$port" "${MASH_EXTRA_ENV[@]}"
    STARTUP_MS=$(time_to_ready "$port" "$MASH_PID" "$t0" 30) || { stop_mash "$MASH_PID" 5; return 1; }
    stop_mash "$MASH_PID" 10 || bench_log "startup: mash needed SIGKILL to stop"
}

scenario_run() {
    local runs=$BENCH_STARTUP_RUNS i fresh=() migrated=() dir
    for ((i = 1; i <= runs; i++)); do
        startup_once startup-fresh "$BENCH_TMP/startup-fresh-$i" || return 1
        fresh+=("$STARTUP_MS")
    done
    dir=$BENCH_TMP/startup-migrated
    startup_once startup-migrated-prep "$dir" || return 1
    [[ -f $dir/data/mash.db ]] || bench_log "startup: warning, $dir/data/mash.db was not created"
    for ((i = 1; i <= runs; i++)); do
        startup_once startup-migrated "$dir" || return 1
        migrated+=("$STARTUP_MS")
    done
    bench_log "startup fresh (ms): ${fresh[*]}"
    bench_log "startup migrated (ms): ${migrated[*]}"

    local fm fx mm mx
    fm=$(median "${fresh[@]}"); fx=$(max "${fresh[@]}")
    mm=$(median "${migrated[@]}"); mx=$(max "${migrated[@]}")
    md_row "Fresh data dir, median of $runs" "$fm ms" "300 ms" "$(ratio_pct "$fm" 300)% of limit / < 300 ms" "$(met "$fm" lt 300)"
    md_row "Fresh data dir, max of $runs" "$fx ms" "300 ms" "$(ratio_pct "$fx" 300)% of limit / < 300 ms" "$(met "$fx" lt 300)"
    md_row "Migrated SQLite file, median of $runs" "$mm ms" "300 ms" "$(ratio_pct "$mm" 300)% of limit / < 300 ms" "$(met "$mm" lt 300)"
    md_row "Migrated SQLite file, max of $runs" "$mx ms" "300 ms" "$(ratio_pct "$mx" 300)% of limit / < 300 ms" "$(met "$mx" lt 300)"
}
