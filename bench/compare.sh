#!/usr/bin/env bash
# Old binary against new, in one run: each scenario is measured with the old build and then the
# new one, back to back, so the two figures share the machine's state of the moment.
#
#   bash bench/compare.sh OLD_TARGET_DIR NEW_TARGET_DIR scenario...
#
# A target dir is a cargo target directory holding a release build of mash and its examples
# (`cargo build --release --bin mash --examples`): `<dir>/release/mash` is measured with
# `<dir>/release/examples/*` as its load generators (job_load links the queue it measures).
# Each run writes bench/out/compare/<scenario>-old.md and -new.md (RESULTS.md is left alone);
# the figures are then set side by side by hand in RESULTS.md.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
(($# >= 3)) || { echo "usage: $0 OLD_TARGET_DIR NEW_TARGET_DIR scenario..." >&2; exit 2; }
old=$(cd "$1" && pwd) new=$(cd "$2" && pwd)
shift 2
out=$BENCH_DIR/out/compare
mkdir -p "$out"
status=0
for scenario in "$@"; do
    for side in old new; do
        dir=$old
        [[ $side == new ]] && dir=$new
        echo "==> $scenario on the $side build ($dir/release/mash)" >&2
        MASH_BIN=$dir/release/mash CARGO_TARGET_DIR=$dir BENCH_PREBUILT=1 \
            BENCH_RESULTS=$out/$scenario-$side.md BENCH_OUT=$out/raw-$scenario-$side \
            bash "$BENCH_DIR/run.sh" "$scenario" || status=1
    done
done
exit $status
