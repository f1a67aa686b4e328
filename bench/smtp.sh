#!/usr/bin/env bash
# SMTP throughput of `newsletter send` against the physical limit of this machine, measured
# in one run: Postfix's smtp-source and newsletter take turns sending N ~40 KB messages to
# one smtp-sink on 127.0.0.1, and the sink's own counter checks that exactly N arrived each
# time. Prints each run, the medians and the ratios.
#
#   bench/smtp.sh                      # N=10000, 4 connections, 3 rounds
#   N=1000 C=1 RUNS=5 bench/smtp.sh
#   MODES="limit journal nojournal mailmerge" bench/smtp.sh
#
# Modes: limit (smtp-source -d -s C), journal (newsletter send, the real thing),
# nojournal (newsletter send without the journal, to show what durability costs),
# mailmerge (the mailmerge CLI from PyPI, one connection per message).
# Everything talks to 127.0.0.1 only; every run is bounded by `timeout`.
set -euo pipefail

N=${N:-10000}
C=${C:-4}
RUNS=${RUNS:-3}
PORT=${PORT:-39125}
MODES=${MODES:-"limit journal nojournal"}
LIMIT_SECONDS=${LIMIT_SECONDS:-600}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${WORK:-$ROOT/target/bench-smtp}
BIN="$ROOT/target/release/newsletter"

die() { echo "error: $*" >&2; exit 2; }
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 1000000 ]] || die "N must be 1..1000000"
[[ "$C" =~ ^[0-9]+$ && "$C" -ge 1 && "$C" -le 64 ]] || die "C must be 1..64"
[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1024 ]] || die "PORT must be a high port"

install_tools() {
  "$ROOT/.ci/install" postfix
  command -v smtp-sink >/dev/null || PATH="$PATH:/usr/sbin"
  if [[ " $MODES " == *" mailmerge "* && ! -x "$WORK/venv/bin/mailmerge" ]]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q mailmerge
  fi
}

sink_pid=""
stop_sink() { [[ -n "$sink_pid" ]] && kill "$sink_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap stop_sink EXIT

start_sink() {
  if ss -Hltn "sport = :$PORT" | grep -q .; then die "port $PORT is in use; set PORT"; fi
  : >"$WORK/sink.log"
  # -c: a running count of completed DATA commands; 1024: listen backlog.
  timeout "$((LIMIT_SECONDS * 4))" smtp-sink -c -u nobody "127.0.0.1:$PORT" 1024 >"$WORK/sink.log" 2>&1 &
  sink_pid=$!
  for _ in $(seq 50); do ss -Hltn "sport = :$PORT" | grep -q . && return; sleep 0.1; done
  die "smtp-sink did not start"
}

received() { # messages counted by the sink so far
  tr '\r' '\n' <"$WORK/sink.log" | grep -Eo '[0-9]+' | tail -1 || echo 0
}

prepare() {
  mkdir -p "$WORK"
  (cd "$ROOT" && cargo build --release --quiet --features bench)
  rm -rf "$WORK/project"
  python3 "$ROOT/bench/make_project.py" --dir "$WORK/project" --n "$N" --port "$PORT" --connections "$C"
  # The message smtp-source sends: one of ours, byte for byte.
  rm -rf "$WORK/sample"
  "$BIN" -q --config "$WORK/project/newsletter.toml" preview --out "$WORK/sample" >/dev/null
  EML=$(ls "$WORK"/sample/*.eml)
  if [[ " $MODES " == *" mailmerge "* ]]; then
    python3 - "$WORK" "$N" "$PORT" "$EML" <<'PY'
import csv, pathlib, sys
work, n, port, eml = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = pathlib.Path(eml).read_text().split("\n\n", 1)[1]
(work / "mm").mkdir(exist_ok=True)
(work / "mm/template.txt").write_text(
    "TO: {{email}}\nFROM: weekly@harbour.example\nSUBJECT: Harbour Weekly\n"
    "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"=_b\"\n\n"
    + body.replace("{", "&#123;"))
with open(work / "mm/database.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["email", "name"])
    for i in range(n): w.writerow([f"reader{i}@example.org", f"Reader {i}"])
(work / "mm/server.conf").write_text(
    f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\nusername = None\nratelimit = 0\n")
PY
  fi
}

run_one() { # mode -> prints "msgs_per_s rss_kb"
  local mode=$1 before after start end rss
  before=$(received)
  rm -f "$WORK"/project/newsletter.db* "$WORK/time.txt"
  start=$(date +%s%N)
  case $mode in
    limit) timeout "$LIMIT_SECONDS" /usr/bin/time -f '%M' -o "$WORK/time.txt" \
             smtp-source -d -s "$C" -m "$N" -F "$EML" "127.0.0.1:$PORT" >/dev/null ;;
    journal) timeout "$LIMIT_SECONDS" /usr/bin/time -f '%M' -o "$WORK/time.txt" \
             "$BIN" -q --config "$WORK/project/newsletter.toml" send >/dev/null ;;
    nojournal) timeout "$LIMIT_SECONDS" /usr/bin/time -f '%M' -o "$WORK/time.txt" \
             "$BIN" -q --config "$WORK/project/newsletter.toml" send --no-journal >/dev/null ;;
    mailmerge) (cd "$WORK/mm" && timeout "$LIMIT_SECONDS" /usr/bin/time -f '%M' -o "$WORK/time.txt" \
             "$WORK/venv/bin/mailmerge" --template template.txt --database database.csv \
             --config server.conf --no-dry-run --no-limit --output-format raw >/dev/null) ;;
    *) die "unknown mode $mode" ;;
  esac
  end=$(date +%s%N)
  sleep 0.3 # the sink's counter line is written as messages complete
  after=$(received)
  rss=$(tail -1 "$WORK/time.txt")
  if (( after - before != N )); then
    echo "run of $mode delivered $((after - before)) of $N" >&2
    echo "NA $rss"
    return
  fi
  awk -v n="$N" -v ns="$((end - start))" -v rss="$rss" 'BEGIN { printf "%.1f %s\n", n / (ns / 1e9), rss }'
}

median() { printf '%s\n' "$@" | grep -v NA | sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "NA"; exit} print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

install_tools
prepare
start_sink
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); N=$N messages of $(stat -c %s "$EML") bytes, C=$C connections, $RUNS rounds"
declare -A results rss_of
for r in $(seq "$RUNS"); do
  for mode in $MODES; do
    read -r rate rss < <(run_one "$mode")
    results[$mode]+="$rate "
    rss_of[$mode]="$rss"
    printf 'round %d  %-10s %10s msgs/s  peak RSS %s KB\n' "$r" "$mode" "$rate" "$rss"
  done
done
echo "---"
for mode in $MODES; do
  # shellcheck disable=SC2086
  m[0]=$(median ${results[$mode]})
  printf 'median     %-10s %10s msgs/s\n' "$mode" "${m[0]}"
  eval "med_$mode=${m[0]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.3f", a / b }'; }
if [[ " $MODES " == *" limit "* && " $MODES " == *" journal "* ]]; then
  echo "ratio journal/limit:      $(ratio "${med_journal:-NA}" "${med_limit:-NA}")"
fi
if [[ " $MODES " == *" nojournal "* && " $MODES " == *" journal "* ]]; then
  echo "ratio journal/nojournal:  $(ratio "${med_journal:-NA}" "${med_nojournal:-NA}")"
fi
if [[ " $MODES " == *" mailmerge "* && " $MODES " == *" journal "* ]]; then
  echo "ratio journal/mailmerge:  $(ratio "${med_journal:-NA}" "${med_mailmerge:-NA}")"
fi
