#!/usr/bin/env bash
# Sending to a relay further away: `newsletter send` of N messages through a proxy that
# holds every chunk DELAY_MS in each direction (bench/delay_proxy.py) in front of Postfix's
# smtp-sink, at each C in CS, against BASELINE_BIN in the same rounds (alternating which
# goes first). Prints each run, then per C the medians and the ratio paired by round. All
# on 127.0.0.1; every run is bounded by `timeout`.
#
#   BASELINE_BIN=/path/to/old/newsletter bench/rtt.sh            # N=400, 1 ms each way
#   N=1000 DELAY_MS=5 CS="4" ROUNDS=5 BASELINE_BIN=... bench/rtt.sh
set -euo pipefail

N=${N:-400}
DELAY_MS=${DELAY_MS:-1}
CS=${CS:-"1 4"}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-39151}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${WORK:-$ROOT/target/bench-rtt}
BIN="$ROOT/target/release/newsletter"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 100000 ]] || die "N must be 1..100000"
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 100 ]] || die "ROUNDS must be 1..100"
[[ -n "${BASELINE_BIN:-}" ]] || die "set BASELINE_BIN to the build to compare with"

(cd "$ROOT" && cargo build --release --quiet)
rm -rf "$WORK" && mkdir -p "$WORK"
# Copies made now, as in bench/first.sh: an old binary file starts slower.
cp "$BIN" "$WORK/newsletter" && cp "$BASELINE_BIN" "$WORK/baseline"
start_sink "$PORT"
if ss -Hltn "sport = :$((PORT + 1))" | grep -q .; then die "port $((PORT + 1)) is in use; set PORT"; fi
timeout 3600 python3 "$ROOT/bench/delay_proxy.py" "$((PORT + 1))" "$PORT" \
  "$(awk -v d="$DELAY_MS" 'BEGIN { print d / 1000 }')" &
proxy=$!
trap 'kill $sink $proxy 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 50); do ss -Hltn "sport = :$((PORT + 1))" | grep -q . && break; sleep 0.1; done

# bin c -> messages per second of one send of N messages at C connections.
rate() {
  local start end
  rm -f "$WORK"/project/newsletter.db*
  start=$(date +%s%N)
  timeout 600 "$1" -q --config "$WORK/project/newsletter.toml" send --connections "$2" >/dev/null
  end=$(date +%s%N)
  awk -v n="$N" -v ns="$((end - start))" 'BEGIN { printf "%.1f", n / (ns / 1e9) }'
}

echo "N=$N messages, ${DELAY_MS} ms each way (round trip +$((2 * DELAY_MS)) ms), C in {$CS}, $ROUNDS rounds"
for c in $CS; do
  python3 "$ROOT/bench/make_project.py" --dir "$WORK/project" --n "$N" --port "$((PORT + 1))" --connections "$c" >/dev/null
  ours=() theirs=() pairs=()
  for r in $(seq "$ROUNDS"); do
    if (( r % 2 )); then a=$(rate "$WORK/newsletter" "$c"); b=$(rate "$WORK/baseline" "$c")
    else b=$(rate "$WORK/baseline" "$c"); a=$(rate "$WORK/newsletter" "$c"); fi
    echo "round $r  C=$c  newsletter $a msgs/s  baseline $b msgs/s"
    ours+=("$a"); theirs+=("$b"); pairs+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')")
  done
  echo "C=$c: newsletter $(median "${ours[@]}") msgs/s ($(spread "${ours[@]}")), baseline $(median "${theirs[@]}") ($(spread "${theirs[@]}")); paired ratio $(median "${pairs[@]}") ($(spread "${pairs[@]}"))"
done
