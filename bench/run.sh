#!/usr/bin/env bash
# Mash benchmark harness. See bench/README.md.
#
#   bash bench/run.sh                    # every scenario in bench/scenarios/, in file order
#   bash bench/run.sh health_ready       # only the named scenario(s)
#
# Environment (all optional):
#   MASH_BIN            binary to measure; when unset: `cargo build --release` in the repo root
#                       (honours CARGO_TARGET_DIR) and use <target>/release/mash
#   BENCH_DURATION      seconds per load run (wrk -d, pgbench -T)          default 10
#   BENCH_CONNECTIONS   concurrent connections (wrk -c, pgbench -c)        default 32
#   BENCH_THREADS       load generator threads (wrk -t, pgbench -j)        default 2
#   BENCH_PGBENCH_MODE  pgbench query protocol: simple|extended|prepared   default prepared
#   BENCH_PGHOST / BENCH_PGPORT / BENCH_PGUSER   PostgreSQL server         127.0.0.1 / 5432 / postgres
#   BENCH_DB            database created fresh for the run                 default mash_bench
#   BENCH_RESULTS       where the report goes                              default bench/RESULTS.md
#   BENCH_STARTUP_RUNS  repetitions of each startup measurement            default 10
#   BENCH_DB_MAX_CONNECTIONS  passed to mash as DB_MAX_CONNECTIONS; unset = the server's default
#   BENCH_LOG_FORMAT    LOG_FORMAT for every mash started (default json, as in the Docker image);
#                       RUST_LOG is passed through unchanged
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh disable=SC2153
source "$BENCH_DIR/lib.sh"

: "${BENCH_DURATION:=10}"
: "${BENCH_CONNECTIONS:=32}"
: "${BENCH_THREADS:=2}"
: "${BENCH_PGBENCH_MODE:=prepared}"
: "${BENCH_PGHOST:=127.0.0.1}"
: "${BENCH_PGPORT:=5432}"
: "${BENCH_PGUSER:=postgres}"
: "${BENCH_DB:=mash_bench}"
: "${BENCH_RESULTS:=$BENCH_DIR/RESULTS.md}"
: "${BENCH_STARTUP_RUNS:=10}"
: "${BENCH_OUT:=$BENCH_DIR/out}"
export BENCH_DURATION BENCH_CONNECTIONS BENCH_THREADS BENCH_PGBENCH_MODE BENCH_PGHOST \
    BENCH_PGPORT BENCH_PGUSER BENCH_DB BENCH_RESULTS BENCH_STARTUP_RUNS BENCH_OUT

case $BENCH_PGHOST in
    127.0.0.1 | localhost | ::1) ;;
    *) bench_die "BENCH_PGHOST must be a loopback address (got $BENCH_PGHOST)" ;;
esac

for tool in curl wrk pgbench psql awk timeout; do
    command -v "$tool" >/dev/null 2>&1 || bench_die "missing tool: $tool"
done

# ---------------------------------------------------------------------------
# Scenario selection: bench/scenarios/NN_name.sh, addressed by "name".
# ---------------------------------------------------------------------------
scenario_name() { local b; b=$(basename "$1" .sh); echo "${b#[0-9]*_}"; }

ALL_SCENARIOS=("$BENCH_DIR"/scenarios/*.sh)
SELECTED=()
if (($# == 0)); then
    SELECTED=("${ALL_SCENARIOS[@]}")
else
    for want in "$@"; do
        found=
        for f in "${ALL_SCENARIOS[@]}"; do
            [[ $(scenario_name "$f") == "$want" ]] && { SELECTED+=("$f"); found=1; }
        done
        [[ -n $found ]] || bench_die "unknown scenario '$want' (have: $(for f in "${ALL_SCENARIOS[@]}"; do printf '%s ' "$(scenario_name "$f")"; done))"
    done
fi

mkdir -p "$BENCH_OUT"
rm -f "$BENCH_OUT"/*.log "$BENCH_OUT"/*.txt
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/mash-bench.XXXXXX")
export BENCH_TMP

on_exit() {
    cleanup_mash
    trim_logs
    rm -rf "$BENCH_TMP"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# The binary
# ---------------------------------------------------------------------------
BINARY_NOTE="given as MASH_BIN"
if [[ -z ${MASH_BIN:-} ]]; then
    target_dir=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
    bench_log "MASH_BIN unset: cargo build --release (target dir $target_dir)"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR=$target_dir cargo build --release --bin mash) ||
        bench_die "cargo build --release failed"
    MASH_BIN=$target_dir/release/mash
    BINARY_NOTE="release build by the harness (\`cargo build --release\`)"
fi
[[ -x $MASH_BIN ]] || bench_die "MASH_BIN=$MASH_BIN is not an executable"
MASH_BIN=$(cd "$(dirname "$MASH_BIN")" && pwd)/$(basename "$MASH_BIN")
export MASH_BIN
bench_log "measuring $MASH_BIN"

# Extra environment for every mash started by the harness.
MASH_EXTRA_ENV=()
[[ -n ${BENCH_DB_MAX_CONNECTIONS:-} ]] && MASH_EXTRA_ENV+=("DB_MAX_CONNECTIONS=$BENCH_DB_MAX_CONNECTIONS")

# ---------------------------------------------------------------------------
# Shared mash on a fresh PostgreSQL database, for scenarios that set SCENARIO_NEEDS_PG=1.
# ---------------------------------------------------------------------------
needs_pg=
for f in "${SELECTED[@]}"; do
    grep -q '^SCENARIO_NEEDS_PG=1' "$f" && needs_pg=1
done

PG_SERVER_VERSION=
SHUTDOWN_NOTE=
if [[ -n $needs_pg ]]; then
    PG_SERVER_VERSION=$(psql_admin 'SHOW server_version') || bench_die "cannot reach PostgreSQL at $BENCH_PGHOST:$BENCH_PGPORT as $BENCH_PGUSER"
    PG_SERVER_VERSION=${PG_SERVER_VERSION%% *}
    bench_log "fresh database $BENCH_DB on PostgreSQL $PG_SERVER_VERSION"
    psql_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" || bench_die "cannot drop $BENCH_DB"
    psql_admin "CREATE DATABASE $BENCH_DB" || bench_die "cannot create $BENCH_DB"

    MASH_PG_URL="postgres://$BENCH_PGUSER@$BENCH_PGHOST:$BENCH_PGPORT/$BENCH_DB"
    MASH_PORT=$(free_port) || bench_die "no free port"
    start_mash pg "$BENCH_TMP/pg" "$MASH_PORT" DATABASE_URL="$MASH_PG_URL" "${MASH_EXTRA_ENV[@]}"
    MASH_PG_PID=$MASH_PID
    wait_ready "$MASH_PORT" 120 "$MASH_PG_PID" || bench_die "mash on PostgreSQL never became ready; see $BENCH_OUT/mash-pg.log"
    MASH_URL="http://127.0.0.1:$MASH_PORT"
    export MASH_URL MASH_PORT MASH_PG_PID MASH_PG_URL
    bench_log "mash (pid $MASH_PG_PID) ready at $MASH_URL"
fi

# ---------------------------------------------------------------------------
# Run the scenarios. Each file sets SCENARIO_TITLE, SCENARIO_HOW (may use $variables set by
# its run), optionally SCENARIO_NEEDS_PG=1, and defines scenario_run, which prints Markdown
# table rows (md_row). Sections are collected in $BENCH_TMP/sections.md.
# ---------------------------------------------------------------------------
SECTIONS=$BENCH_TMP/sections.md
: >"$SECTIONS"
FAILED=()
for f in "${SELECTED[@]}"; do
    name=$(scenario_name "$f")
    unset SCENARIO_TITLE SCENARIO_HOW SCENARIO_NEEDS_PG
    unset -f scenario_run scenario_how
    # shellcheck disable=SC1090
    source "$f"
    bench_log "scenario $name: ${SCENARIO_TITLE:-$name}"
    rows=$BENCH_TMP/rows-$name.md
    if scenario_run >"$rows"; then status=ok; else status=failed; FAILED+=("$name"); fi
    {
        echo "## ${SCENARIO_TITLE:-$name} (\`$name\`)"
        echo
        if [[ -s $rows ]]; then
            echo "| Metric | Mash | Limit (what it's compared to) | Ratio / Target | Met? |"
            echo "|---|---:|---|---|:---:|"
            cat "$rows"
            echo
        fi
        [[ $status == failed ]] && echo "**Scenario failed**: see \`bench/out/\` (mash logs, raw tool output) and the run's stderr." && echo
        # A scenario's analysis (why a figure is what it is) lives in bench/notes/<name>.md.
        if [[ -s $BENCH_DIR/notes/$name.md ]]; then
            cat "$BENCH_DIR/notes/$name.md"
            echo
        fi
        if declare -F scenario_how >/dev/null; then
            echo "How measured: $(scenario_how)"
        else
            echo "How measured: ${SCENARIO_HOW:-}"
        fi
        echo
    } >>"$SECTIONS"
done

if [[ -n $needs_pg ]]; then
    t0=$(now_ns)
    if stop_mash "$MASH_PG_PID" 10; then
        SHUTDOWN_NOTE="mash on PostgreSQL exited $(awk -v d="$(($(now_ns) - t0))" 'BEGIN { printf "%.0f", d / 1e6 }') ms after SIGTERM with status $STOP_STATUS"
        [[ $STOP_STATUS == 0 ]] && SHUTDOWN_NOTE+=" (graceful)." || SHUTDOWN_NOTE+=" (**not a clean exit**; 143 = died of the signal)."
    else
        SHUTDOWN_NOTE="**mash on PostgreSQL ignored SIGTERM for 10 s and was killed.**"
    fi
fi

# ---------------------------------------------------------------------------
# RESULTS.md
# ---------------------------------------------------------------------------
commit=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null) || commit="none (no commit yet)"
if [[ $commit != none* ]] && [[ -n $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no -- . ":!bench/RESULTS.md" ":!bench/out" 2>/dev/null) ]]; then
    commit+="-dirty"
fi
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_mib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1024 }' /proc/meminfo)
mash_version=$("$MASH_BIN" --version 2>/dev/null | head -n 1) || mash_version=
wrk_version=$(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')
pgbench_version=$(pgbench --version | awk '{ print $3 }')

tmp_results=$BENCH_TMP/RESULTS.md
{
    echo "# Mash benchmark results"
    echo
    echo "Generated by \`bench/run.sh\`; see \`bench/README.md\` for what each figure means. Raw output of the last run: \`bench/out/\` (not committed)."
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Commit: \`$commit\`${mash_version:+ ($mash_version)}"
    echo "- Machine: $(nproc) CPUs, ${cpu:-unknown CPU}, ${mem_mib} MiB RAM, Linux $(uname -r)"
    echo "- Binary: \`${MASH_BIN/#$REPO_ROOT\//}\`, $BINARY_NOTE; load generator, mash and PostgreSQL share the same machine and talk over loopback"
    echo "- Load: ${BENCH_DURATION} s per run, ${BENCH_CONNECTIONS} connections, ${BENCH_THREADS} threads (wrk ${wrk_version:-?}, pgbench ${pgbench_version:-?}${PG_SERVER_VERSION:+, PostgreSQL $PG_SERVER_VERSION})"
    echo "- Mash DB pool: ${BENCH_DB_MAX_CONNECTIONS:-server default} (DB_MAX_CONNECTIONS); logging: LOG_FORMAT=${BENCH_LOG_FORMAT:-json}, RUST_LOG=${RUST_LOG:-unset (server default)}"
    echo "- Scenarios run: $(for f in "${SELECTED[@]}"; do printf '%s ' "$(scenario_name "$f")"; done)"
    [[ -n $SHUTDOWN_NOTE ]] && echo "- Shutdown: $SHUTDOWN_NOTE"
    echo
    cat "$SECTIONS"
} >"$tmp_results"
mv "$tmp_results" "$BENCH_RESULTS"
bench_log "wrote $BENCH_RESULTS"

if ((${#FAILED[@]})); then
    bench_log "failed scenarios: ${FAILED[*]}"
    exit 1
fi
