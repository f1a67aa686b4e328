#!/usr/bin/env bash
# Time to the first message: a whole `newsletter send` to one recipient from a new state
# database (the bench project: eight articles, a ~42 KB message) against Postfix's
# `smtp-source -m 1` sending that same message, both to one smtp-sink on 127.0.0.1, in
# interleaved rounds. Prints each round, then the medians, spreads and the ratio.
#
#   bench/first.sh                      # 11 rounds
#   RUNS=21 BASELINE_BIN=/path/to/old/newsletter bench/first.sh
set -euo pipefail

RUNS=${RUNS:-11}
PORT=${PORT:-39135}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${WORK:-$ROOT/target/bench-first}
BIN="$ROOT/target/release/newsletter"

die() { echo "error: $*" >&2; exit 2; }
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 && "$RUNS" -le 1000 ]] || die "RUNS must be 1..1000"

"$ROOT/.ci/install" postfix
command -v smtp-sink >/dev/null || PATH="$PATH:/usr/sbin"
(cd "$ROOT" && cargo build --release --quiet)
rm -rf "$WORK" && mkdir -p "$WORK"
python3 "$ROOT/bench/make_project.py" --dir "$WORK/project" --n 1 --port "$PORT" --connections 1 >/dev/null
"$BIN" -q --config "$WORK/project/newsletter.toml" preview --out "$WORK/sample" >/dev/null
EML=$(ls "$WORK"/sample/*.eml)

if ss -Hltn "sport = :$PORT" | grep -q .; then die "port $PORT is in use; set PORT"; fi
timeout 3600 smtp-sink -u nobody "127.0.0.1:$PORT" 64 >/dev/null 2>&1 &
sink=$!
trap 'kill $sink 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 50); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done

ms() { # command... -> elapsed milliseconds
  local start end
  start=$(date +%s%N)
  timeout 60 "$@" >/dev/null
  end=$(date +%s%N)
  awk -v ns="$((end - start))" 'BEGIN { printf "%.1f", ns / 1e6 }'
}
ours() { rm -f "$WORK"/project/newsletter.db*; ms "$1" -q --config "$WORK/project/newsletter.toml" send; }
limit() { ms smtp-source -m 1 -s 1 -F "$EML" "127.0.0.1:$PORT"; }

a=() b=() base=()
for r in $(seq "$RUNS"); do
  x=$(ours "$BIN"); y=$(limit)
  z=""; if [[ -n "${BASELINE_BIN:-}" ]]; then z=$(ours "$BASELINE_BIN"); base+=("$z"); fi
  a+=("$x"); b+=("$y")
  echo "round $r  newsletter ${x} ms  smtp-source ${y} ms${z:+  baseline ${z} ms}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%s-%s", lo, hi}'; }
mo=$(median "${a[@]}"); ml=$(median "${b[@]}")
echo "---"
echo "newsletter send (one recipient, new database): median $mo ms, spread $(spread "${a[@]}")"
echo "smtp-source -m 1:                                median $ml ms, spread $(spread "${b[@]}")"
if [[ ${#base[@]} -gt 0 ]]; then
  echo "baseline newsletter:                             median $(median "${base[@]}") ms, spread $(spread "${base[@]}")"
fi
awk -v o="$mo" -v l="$ml" 'BEGIN { printf "ratio: %.1f x smtp-source\n", o / l }'
