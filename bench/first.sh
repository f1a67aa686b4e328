#!/usr/bin/env bash
# Time to the first message: a whole `newsletter send` to one recipient (the bench project:
# eight articles, a ~42 KB message) against Postfix's `smtp-source -m 1` sending that same
# message, both to one smtp-sink on 127.0.0.1, in interleaved rounds (with a baseline binary,
# the order alternates from round to round). Two kinds of run: the first one of a project
# (the state database is made), and a later one (the database exists, with its schema and
# whatever send log the first send made; the edition in it is removed before each round,
# so the same edition is new again). Prints each round, then the medians, spreads and
# ratios, then the flushes the disk received during each kind of run.
#
#   bench/first.sh                      # 11 rounds
#   RUNS=21 BASELINE_BIN=/path/to/old/newsletter bench/first.sh
set -euo pipefail

RUNS=${RUNS:-11}
PORT=${PORT:-39135}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${WORK:-$ROOT/target/bench-first}
BIN="$ROOT/target/release/newsletter"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 && "$RUNS" -le 1000 ]] || die "RUNS must be 1..1000"

(cd "$ROOT" && cargo build --release --quiet)
rm -rf "$WORK" && mkdir -p "$WORK"
# Both binaries run from copies made now: a binary file written long ago starts about 1 ms
# slower here than a fresh copy of the same bytes (its page-cache pages have aged), which
# would favour whichever side was built last.
cp "$BIN" "$WORK/newsletter" && BIN="$WORK/newsletter"
if [[ -n "${BASELINE_BIN:-}" ]]; then
  cp "$BASELINE_BIN" "$WORK/newsletter-baseline" && BASELINE_BIN="$WORK/newsletter-baseline"
fi
python3 "$ROOT/bench/make_project.py" --dir "$WORK/project" --n 1 --port "$PORT" --connections 1 >/dev/null
"$BIN" -q --config "$WORK/project/newsletter.toml" preview --out "$WORK/sample" >/dev/null
EML=$(ls "$WORK"/sample/*.eml)

start_sink "$PORT"
DB="$WORK/project/newsletter.db"
# The later run's database: one send made it; its edition is then removed (the schema,
# the send log and its applied mark stay) and it is copied, with its WAL and shared-memory
# files as a run leaves them, back into place before each round. The baseline gets one
# made by itself (its schema may be older).
make_existing() { # binary, directory
  rm -f "$DB"*
  "$1" -q --config "$WORK/project/newsletter.toml" send >/dev/null
  rm -rf "$2" && mkdir -p "$2"
  python3 - "$DB" "$2" <<'PY'
import os, shutil, sqlite3, sys
db, to = sys.argv[1], sys.argv[2]
# A second connection stays open while the first closes, so that closing does not fold
# the WAL into the database and delete it (the program leaves it, as a later run finds it).
keep = sqlite3.connect(db)
keep.execute("SELECT count(*) FROM edition").fetchall()
c = sqlite3.connect(db)
tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
for table in ("delivery", "edition_article", "edition_frozen", "edition"):
    if table in tables:
        c.execute(f"DELETE FROM {table}")
c.commit()
c.close()
for suffix in ("", "-wal", "-shm", "-sendlog"):
    # A one-recipient send makes no send log in a new project.
    if os.path.exists(db + suffix):
        shutil.copy(db + suffix, to)
keep.close()
PY
}
make_existing "$BIN" "$WORK/existing"
if [[ -n "${BASELINE_BIN:-}" ]]; then make_existing "$BASELINE_BIN" "$WORK/existing-baseline"; fi

new_db() { rm -f "$DB"*; }
# The copies are synced to disk, with the directory: a later run finds its files long since
# written back, and its first sync would otherwise flush the copy.
existing_db() { # directory
  rm -f "$DB"*
  cp "$1/"* "$WORK/project/"
  sync "$WORK/project" "$DB"*
}
ours() { ms "$1" -q --config "$WORK/project/newsletter.toml" send; }
limit() { ms smtp-source -m 1 -s 1 -F "$EML" "127.0.0.1:$PORT"; }

first=() later=() src=() bfirst=() blater=() lower=0 flower=0 fdiff=() ldiff=()
# One pair of runs (a first one, then a later one) of a binary: "first later".
pair() { # binary, existing-database directory
  local f l
  new_db; f=$(ours "$1"); existing_db "$2"; l=$(ours "$1")
  echo "$f $l"
}
for r in $(seq "$RUNS"); do
  # The order alternates from round to round: what ran just before a command (the other
  # binary, smtp-source, their files) must not favour one of them.
  if [[ -n "${BASELINE_BIN:-}" && $((r % 2)) -eq 0 ]]; then
    read -r bf bl < <(pair "$BASELINE_BIN" "$WORK/existing-baseline") || true
    s=$(limit)
    read -r f l < <(pair "$BIN" "$WORK/existing") || true
  else
    read -r f l < <(pair "$BIN" "$WORK/existing") || true
    s=$(limit)
    if [[ -n "${BASELINE_BIN:-}" ]]; then
      read -r bf bl < <(pair "$BASELINE_BIN" "$WORK/existing-baseline") || true
    fi
  fi
  [[ -n "${f:-}" && -n "${l:-}" ]] || die "round $r: a run of $BIN failed"
  first+=("$f"); later+=("$l"); src+=("$s")
  line="round $r  first run ${f} ms  later run ${l} ms  smtp-source ${s} ms"
  if [[ -n "${BASELINE_BIN:-}" ]]; then
    [[ -n "${bf:-}" && -n "${bl:-}" ]] || die "round $r: a run of $BASELINE_BIN failed"
    bfirst+=("$bf"); blater+=("$bl")
    line+="  baseline ${bf} / ${bl} ms"
    if awk -v a="$l" -v b="$bl" 'BEGIN { exit !(a < b) }'; then lower=$((lower + 1)); fi
    if awk -v a="$f" -v b="$bf" 'BEGIN { exit !(a < b) }'; then flower=$((flower + 1)); fi
    fdiff+=("$(awk -v a="$f" -v b="$bf" 'BEGIN { printf "%.2f", a - b }')")
    ldiff+=("$(awk -v a="$l" -v b="$bl" 'BEGIN { printf "%.2f", a - b }')")
  fi
  echo "$line"
done
row() { # label, values...: the median, the spread, the ratio to smtp-source's median
  local label=$1; shift
  awk -v l="$label" -v m="$(median "$@")" -v s="$(spread "$@")" -v src="$(median "${src[@]}")" \
    'BEGIN { printf "%-44s median %6.1f ms, spread %s, %.2f x smtp-source\n", l, m, s, m / src }'
}
echo "---"
row "smtp-source -m 1:" "${src[@]}"
row "newsletter send, first run (new database):" "${first[@]}"
row "newsletter send, later run (database exists):" "${later[@]}"
if [[ ${#bfirst[@]} -gt 0 ]]; then
  row "baseline, first run:" "${bfirst[@]}"
  row "baseline, later run:" "${blater[@]}"
  echo "first run lower than the baseline's in $flower of $RUNS rounds; this minus the baseline, median of the rounds: $(median "${fdiff[@]}") ms"
  echo "later run lower than the baseline's in $lower of $RUNS rounds; this minus the baseline, median of the rounds: $(median "${ldiff[@]}") ms"
fi

# Flushes the disk under the project received during one run (the block device's count of
# completed flush requests, /sys/dev/block/MAJ:MIN/stat field 16): what a sync costs on any
# disk, counted rather than timed. The fewest of 5 runs, since other processes may flush
# the same disk meanwhile.
STAT=$(python3 -c 'import os, sys; d = os.stat(sys.argv[1]).st_dev; print(f"/sys/dev/block/{os.major(d)}:{os.minor(d)}/stat")' "$WORK/project")
if [[ -r "$STAT" && $(awk '{print NF}' "$STAT") -ge 16 ]]; then
  flushes() { awk '{print $16}' "$STAT"; }
  fewest() { # binary, existing-database directory ("" for a new one)
    local best="" a b
    for _ in 1 2 3 4 5; do
      if [[ -n "$2" ]]; then existing_db "$2"; else new_db; sync "$WORK/project"; fi
      a=$(flushes); "$1" -q --config "$WORK/project/newsletter.toml" send >/dev/null; b=$(flushes)
      if [[ -z "$best" || $((b - a)) -lt $best ]]; then best=$((b - a)); fi
    done
    echo "$best"
  }
  line="disk flushes per run (fewest of 5): first run $(fewest "$BIN" ""), later run $(fewest "$BIN" "$WORK/existing")"
  if [[ -n "${BASELINE_BIN:-}" ]]; then
    line+="; baseline $(fewest "$BASELINE_BIN" "") and $(fewest "$BASELINE_BIN" "$WORK/existing-baseline")"
  fi
  echo "$line"
else
  echo "disk flushes: not counted (no block device statistics for $WORK/project)"
fi
