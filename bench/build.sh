#!/usr/bin/env bash
# The cold release build: `cargo build --release --timings` into an empty target directory,
# for this tree and for BASELINE (any git revision), interleaved (baseline, this, this,
# baseline, ...: neither side always builds first on a machine that warms up or gets
# busier), with the crates already downloaded. Prints each build's wall time, its number of
# units and the sum of their times, then the medians and the ten longest units of each side's
# last build; the --timings reports are kept under $WORK.
#
#   BASELINE=8e419ba bench/build.sh          # 2 rounds: 4 builds, ~12 minutes on 2 cores
#   RUNS=3 BASELINE=HEAD~3 bench/build.sh
#
# Nothing else should run meanwhile: on two cores the build's wall time is about half its CPU.
set -euo pipefail
RUNS=${RUNS:-2}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${WORK:-$ROOT/target/bench-build}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 && "$RUNS" -le 20 ]] || die "RUNS must be 1..20"
[[ -n "${BASELINE:-}" ]] || die "set BASELINE to a git revision to compare with (e.g. BASELINE=HEAD~1)"
base_rev=$(git -C "$ROOT" rev-parse --verify "$BASELINE^{commit}") || die "no revision $BASELINE"
rm -rf "$WORK" && mkdir -p "$WORK"
# Each side builds from a clean checkout: this tree as committed plus its uncommitted changes
# would differ from what a clone builds, so this side is HEAD (commit first).
git -C "$ROOT" worktree add -q --detach "$WORK/this" HEAD
git -C "$ROOT" worktree add -q --detach "$WORK/baseline" "$base_rev"
trap 'git -C "$ROOT" worktree remove --force "$WORK/this"; git -C "$ROOT" worktree remove --force "$WORK/baseline"' EXIT
for side in this baseline; do
  (cd "$WORK/$side" && timeout 600 cargo fetch --locked -q) || die "cargo fetch failed for $side"
done

summary() { # target dir -> "units sum"
  python3 - "$1" <<'PY'
import glob, json, re, sys
f = sorted(glob.glob(sys.argv[1] + "/cargo-timings/cargo-timing-*.html"))[-1]
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", open(f).read(), re.S).group(1))
print(len(units), round(sum(u["duration"] for u in units), 1))
PY
}
top() { # target dir -> the ten longest units
  python3 - "$1" <<'PY'
import glob, json, re, sys
f = sorted(glob.glob(sys.argv[1] + "/cargo-timings/cargo-timing-*.html"))[-1]
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", open(f).read(), re.S).group(1))
longest = sorted(units, key=lambda u: -u["duration"])[:10]
print(", ".join(
    f"{u['name']}{' (build script)' if 'build-script' in u['target'] else ''} {u['duration']:.1f}"
    for u in longest))
PY
}
build() { # side, round
  local target="$WORK/target-$1" start end
  rm -rf "$target"
  start=$(date +%s%N)
  (cd "$WORK/$1" && CARGO_TARGET_DIR="$target" timeout 1800 cargo build --release --locked --timings -q) \
    >"$WORK/$1-$2.log" 2>&1 || die "the $1 build failed: $WORK/$1-$2.log"
  end=$(date +%s%N)
  cp "$target"/cargo-timings/cargo-timing.html "$WORK/timings-$1-$2.html"
  local s
  s=$(awk -v ns="$((end - start))" 'BEGIN { printf "%.1f", ns / 1e9 }')
  read -r units sum < <(summary "$target")
  echo "round $2  $1  ${s} s  ($units units, sum of unit times ${sum} s)"
  eval "wall_$1+=(\"$s\")"
}
wall_this=() wall_baseline=()
for r in $(seq "$RUNS"); do
  if (( r % 2 )); then order="baseline this"; else order="this baseline"; fi
  for side in $order; do build "$side" "$r"; done
done
echo "---"
echo "this ($(git -C "$ROOT" rev-parse --short HEAD)): median $(median "${wall_this[@]}") s;  baseline ($(git -C "$ROOT" rev-parse --short "$base_rev")): median $(median "${wall_baseline[@]}") s"
echo "longest units, this:     $(top "$WORK/target-this")"
echo "longest units, baseline: $(top "$WORK/target-baseline")"
rm -rf "$WORK/target-this" "$WORK/target-baseline"
