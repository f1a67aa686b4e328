#!/usr/bin/env bash
# A later run on a database whose write-ahead log earlier runs left long: two one-recipient
# sends in a row (the same bench project as bench/first.sh), from a state database whose log
# holds COMMITS earlier commits of a row each (2,500: ~5,000 frames, 20 MB; below the
# 10,000 frames at which any commit folds the log into the database). The first run reads
# the whole log back when it opens the database (no other process has it open); a run that folds a long log at
# its end pays for that once, and the run after it starts from a short log. Prints each
# round and the medians of both runs, for this build and BASELINE_BIN (interleaved).
#
#   BASELINE_BIN=/path/to/old/newsletter bench/long_log.sh      # 9 rounds
#   RUNS=15 COMMITS=4000 BASELINE_BIN=… bench/long_log.sh
set -euo pipefail
RUNS=${RUNS:-9}
COMMITS=${COMMITS:-2500}
PORT=${PORT:-39137}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${WORK:-$ROOT/target/bench-long-log}
BIN="$ROOT/target/release/newsletter"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 && "$RUNS" -le 200 ]] || die "RUNS must be 1..200"
[[ "$COMMITS" =~ ^[0-9]+$ && "$COMMITS" -ge 1 && "$COMMITS" -le 4500 ]] || die "COMMITS must be 1..4500"
[[ -n "${BASELINE_BIN:-}" && -x "$BASELINE_BIN" ]] || die "set BASELINE_BIN to an older newsletter binary"
(cd "$ROOT" && cargo build --release --quiet)
rm -rf "$WORK" && mkdir -p "$WORK"
P="$WORK/project"
python3 "$ROOT/bench/make_project.py" --dir "$P" --n 1 --port "$PORT" --connections 1 >/dev/null
start_sink "$PORT"

# The edition's rows removed, so the same edition is new again, through a connection that
# is never closed: closing the last connection would fold the log itself.
reset() { # database
  python3 - "$1" <<'PY'
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for table in ("delivery", "edition_article", "edition_frozen", "edition"):
    try:
        c.execute(f"DELETE FROM {table}")
    except sqlite3.OperationalError:
        pass
c.commit()
os._exit(0)
PY
}
# One database per binary (its own schema), made by one send, then COMMITS commits of a row
# each left in its log.
make_long() { # binary, directory
  rm -f "$P"/newsletter.db*
  "$1" -q --config "$P/newsletter.toml" send >/dev/null
  reset "$P/newsletter.db"
  python3 - "$P/newsletter.db" "$COMMITS" <<'PY'
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA wal_autocheckpoint = 0")
for i in range(int(sys.argv[2])):
    c.execute("INSERT OR REPLACE INTO schedule_note (slot, at) VALUES (?, 0)", (f"bench {i}",))
    c.commit()
os._exit(0)
PY
  rm -rf "$2" && mkdir -p "$2" && cp "$P"/newsletter.db* "$2/"
}
make_long "$BIN" "$WORK/long"
make_long "$BASELINE_BIN" "$WORK/long-baseline"
echo "log left by earlier runs: $(stat -c %s "$WORK/long/newsletter.db-wal") bytes"
two_runs() { # binary, directory -> "first second"
  rm -f "$P"/newsletter.db*
  cp "$2"/* "$P/"
  sync "$P" "$P"/newsletter.db*
  local a b
  a=$(ms "$1" -q --config "$P/newsletter.toml" send)
  reset "$P/newsletter.db"
  sync "$P" "$P"/newsletter.db*
  b=$(ms "$1" -q --config "$P/newsletter.toml" send)
  echo "$a $b"
}
first=() second=() bfirst=() bsecond=()
for r in $(seq "$RUNS"); do
  if (( r % 2 )); then order="this baseline"; else order="baseline this"; fi
  line="round $r"
  for side in $order; do
    if [[ $side == this ]]; then
      read -r a b < <(two_runs "$BIN" "$WORK/long"); first+=("$a"); second+=("$b")
    else
      read -r a b < <(two_runs "$BASELINE_BIN" "$WORK/long-baseline"); bfirst+=("$a"); bsecond+=("$b")
    fi
    line+="  $side: ${a} then ${b} ms"
  done
  echo "$line"
done
echo "---"
echo "this build: the run on the long log $(median "${first[@]}") ms ($(spread "${first[@]}")), the run after it $(median "${second[@]}") ms ($(spread "${second[@]}"))"
echo "baseline:   the run on the long log $(median "${bfirst[@]}") ms ($(spread "${bfirst[@]}")), the run after it $(median "${bsecond[@]}") ms ($(spread "${bsecond[@]}"))"
