#!/usr/bin/env bash
# SMTP throughput of `newsletter send` against the physical limit of this machine and
# against other senders, measured in one invocation: Postfix's smtp-source, newsletter
# (journal on, journal off, DKIM on) and the peers take turns sending ~40 KB messages to
# one smtp-sink on 127.0.0.1, at each concurrency, round after round, the order reversed
# on alternate rounds; the sink's own counter checks that every message arrived. Prints
# each run, then per mode and concurrency the median, the spread and the ratios, then the
# system calls per message of the journal.
#
#   bench/smtp.sh                                  # N=10000, CS="1 4 16", 5 rounds
#   N=2000 RUNS=3 CS=4 bench/smtp.sh
#   MODES="limit journal" PEERS="" bench/smtp.sh
#   BASELINE_BIN=/path/to/old/newsletter bench/smtp.sh   # its syscall counts beside ours
#   MODES="journal baseline" BASELINE_BIN=/path/to/old/newsletter bench/smtp.sh   # and its rate
#
# Modes (at each C in CS): limit (smtp-source -d -s C), journal (newsletter send, the
# real thing), nojournal (without the journal: what durability costs), dkim (journal on,
# every message signed with RSA-2048 and Ed25519), baseline (journal on, BASELINE_BIN: an
# older build in the same rounds, with its ratio paired by round), dkimbaseline (dkim, by
# BASELINE_BIN), starttls (journal on, over STARTTLS:
# stunnel offers it in front of the same smtp-sink, with a certificate of a CA made here;
# smtp-source has no TLS, so its ratio is to journal). Peers (at PEER_C connections, PEER_N
# messages): nodemailer (pooled, from npm), mailmerge (PyPI, one connection per message).
# A run slower than 0.75 x the median of its mode is flagged as disturbed (other load on
# the machine); medians are over all runs. Each round also times one fdatasync alone and,
# with FLOOR_N (default 2000; 0 skips it), a minimal client at one connection with and
# without one sync per message (bench/sync_floor.py): the floor any sender that syncs
# there pays on this machine. With PIN=1 the relay (smtp-sink, stunnel) runs on CPU 0 and
# every client on CPU 1 (taskset), as when the relay is another machine: the sender's work
# then no longer takes the sink's core. Talks to 127.0.0.1 only; every run is bounded by
# `timeout`.
set -euo pipefail

N=${N:-10000}
CS=${CS:-"1 4 16"}
RUNS=${RUNS:-5}
PORT=${PORT:-39125}
MODES=${MODES:-"limit journal nojournal dkim starttls"}
TLS_PORT=${TLS_PORT:-$((PORT + 1))}
PEERS=${PEERS-"nodemailer mailmerge"}
PEER_N=${PEER_N:-1000}
PEER_C=${PEER_C:-4}
SYSCALL_N=${SYSCALL_N-2000}
FLOOR_N=${FLOOR_N-2000}
LIMIT_SECONDS=${LIMIT_SECONDS:-600}
PIN=${PIN:-0}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${WORK:-$ROOT/target/bench-smtp}
BIN="$ROOT/target/release/newsletter"

die() { echo "error: $*" >&2; exit 2; }
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 1000000 ]] || die "N must be 1..1000000"
for c in $CS $PEER_C; do [[ "$c" =~ ^[0-9]+$ && "$c" -ge 1 && "$c" -le 64 ]] || die "each C must be 1..64"; done
[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1024 ]] || die "PORT must be a high port"
[[ "$FLOOR_N" =~ ^[0-9]+$ && "$FLOOR_N" -le 100000 ]] || die "FLOOR_N must be 0..100000"
[[ "$PIN" == 0 || "$PIN" == 1 ]] || die "PIN must be 0 or 1"
relay_cpu=(); client_cpu=()
if [[ "$PIN" == 1 ]]; then
  (( $(nproc) >= 2 )) || die "PIN=1 needs two cores"
  relay_cpu=(taskset -c 0); client_cpu=(taskset -c 1)
fi
if [[ " $MODES " == *" baseline "* || " $MODES " == *" dkimbaseline "* ]] && [[ -z "${BASELINE_BIN:-}" ]]; then die "the baseline modes need BASELINE_BIN"; fi

install_tools() {
  "$ROOT/.ci/install" postfix strace
  if [[ " $MODES " == *" starttls "* ]]; then "$ROOT/.ci/install" stunnel; fi
  command -v smtp-sink >/dev/null || PATH="$PATH:/usr/sbin"
  if [[ " $PEERS " == *" mailmerge "* && ! -x "$WORK/venv/bin/mailmerge" ]]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q mailmerge
  fi
  if [[ " $PEERS " == *" nodemailer "* && ! -d "$WORK/node/node_modules/nodemailer" ]]; then
    command -v npm >/dev/null || die "nodemailer needs node and npm"
    mkdir -p "$WORK/node"
    (cd "$WORK/node" && npm install --silent --no-audit --no-fund nodemailer@6 >/dev/null)
  fi
}

sink_pid=""
tls_pid=""
stop_sink() {
  [[ -n "$sink_pid" ]] && kill "$sink_pid" 2>/dev/null
  [[ -n "$tls_pid" ]] && kill "$tls_pid" 2>/dev/null
  wait 2>/dev/null || true
}
trap stop_sink EXIT

start_sink() {
  if ss -Hltn "sport = :$PORT" | grep -q .; then die "port $PORT is in use; set PORT"; fi
  : >"$WORK/sink.log"
  # -c: a running count of completed DATA commands; 1024: listen backlog.
  timeout "$((LIMIT_SECONDS * 20))" ${relay_cpu[@]+"${relay_cpu[@]}"} smtp-sink -c -u nobody "127.0.0.1:$PORT" 1024 >"$WORK/sink.log" 2>&1 &
  sink_pid=$!
  for _ in $(seq 50); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
  ss -Hltn "sport = :$PORT" | grep -q . || die "smtp-sink did not start"
  if [[ " $MODES " == *" starttls "* ]]; then
    if ss -Hltn "sport = :$TLS_PORT" | grep -q .; then die "port $TLS_PORT is in use; set TLS_PORT"; fi
    local stunnel; stunnel=$(command -v stunnel4 || command -v stunnel)
    timeout "$((LIMIT_SECONDS * 20))" ${relay_cpu[@]+"${relay_cpu[@]}"} "$stunnel" "$WORK/stunnel.conf" >"$WORK/stunnel.log" 2>&1 &
    tls_pid=$!
    for _ in $(seq 50); do ss -Hltn "sport = :$TLS_PORT" | grep -q . && return; sleep 0.1; done
    die "stunnel did not start"
  fi
}

received() { # messages counted by the sink so far
  tr '\r' '\n' <"$WORK/sink.log" | grep -Eo '[0-9]+' | tail -1 || echo 0
}

prepare() {
  mkdir -p "$WORK"
  (cd "$ROOT" && cargo build --release --quiet --features bench)
  # Both binaries run from copies made now: a binary file written long ago starts slower
  # than a fresh copy of the same bytes (its page-cache pages have aged).
  cp "$ROOT/target/release/newsletter" "$WORK/newsletter" && BIN="$WORK/newsletter"
  if [[ -n "${BASELINE_BIN:-}" ]]; then
    cp "$BASELINE_BIN" "$WORK/newsletter-baseline" && BASELINE_BIN="$WORK/newsletter-baseline"
  fi
  rm -rf "$WORK/project"
  python3 "$ROOT/bench/make_project.py" --dir "$WORK/project" --n "$N" --port "$PORT" --connections 4
  # The same project, signing with both kinds of key.
  (cd "$WORK/project" && openssl genrsa -out dkim-rsa.pem 2048 2>/dev/null &&
    openssl genpkey -algorithm ed25519 -out dkim-ed.pem 2>/dev/null)
  cp "$WORK/project/newsletter.toml" "$WORK/project/dkim.toml"
  printf '\n[[dkim]]\ndomain = "harbour.example"\nselector = "rsa"\nprivate_key_file = "dkim-rsa.pem"\n\n[[dkim]]\ndomain = "harbour.example"\nselector = "ed"\nprivate_key_file = "dkim-ed.pem"\n' >>"$WORK/project/dkim.toml"
  # STARTTLS: a CA, a certificate for localhost, stunnel in front of the sink (RFC 2487
  # in server mode: it answers the EHLO, offers STARTTLS, then passes the session through).
  if [[ " $MODES " == *" starttls "* ]]; then
    local tls="$WORK/project/tls"
    mkdir -p "$tls"
    (cd "$tls" &&
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null &&
      openssl req -newkey rsa:2048 -nodes -keyout key.pem -out cert.csr -subj /CN=localhost 2>/dev/null &&
      printf 'subjectAltName=DNS:localhost\n' >san.ext &&
      openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile san.ext 2>/dev/null)
    printf 'foreground = yes\npid =\ndebug = 3\n[smtp]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\nprotocol = smtp\ncert = %s/cert.pem\nkey = %s/key.pem\n' \
      "$TLS_PORT" "$PORT" "$tls" "$tls" >"$WORK/stunnel.conf"
    sed -e 's/^host = .*/host = "localhost"/' -e "s/^port = .*/port = $TLS_PORT/" \
      -e 's/^security = .*/security = "starttls"\nca_file = "tls\/ca.pem"/' \
      "$WORK/project/newsletter.toml" >"$WORK/project/tls.toml"
  fi
  # The message smtp-source and the peers send: one of ours, byte for byte.
  rm -rf "$WORK/sample"
  "$BIN" -q --config "$WORK/project/newsletter.toml" preview --out "$WORK/sample" >/dev/null
  EML=$(ls "$WORK"/sample/*.eml)
  if [[ " $PEERS " == *" mailmerge "* ]]; then
    python3 - "$WORK" "$PEER_N" "$PORT" "$EML" <<'PY'
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
  mkdir -p "$WORK/node"
  cat >"$WORK/node/send.js" <<'JS'
// nodemailer's pooled transport: `c` connections reused for every message.
const nodemailer = require("nodemailer");
const fs = require("fs");
const [port, n, c, eml] = process.argv.slice(2);
const raw = fs.readFileSync(eml);
const t = nodemailer.createTransport({
  host: "127.0.0.1", port: Number(port), secure: false, ignoreTLS: true,
  pool: true, maxConnections: Number(c), maxMessages: Infinity,
});
let done = 0, failed = 0;
const total = Number(n);
for (let i = 0; i < total; i++) {
  t.sendMail({ envelope: { from: "weekly@harbour.example", to: [`reader${i}@example.org`] }, raw },
    (err) => { if (err) failed++; if (++done === total) { t.close(); process.exit(failed ? 1 : 0); } });
}
JS
}

# Runs a command bounded in time; its peak memory, user and system CPU go into time.txt.
timed() { timeout "$LIMIT_SECONDS" /usr/bin/time -f '%M %U %S' -o "$WORK/time.txt" ${client_cpu[@]+"${client_cpu[@]}"} "$@" >/dev/null; }

# The machine's CPU so far, all cores, in clock ticks: "busy idle" (idle counts the time
# waiting for the disk too).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }

# The sink's own CPU so far (user + system), in clock ticks: smtp-sink is one process, so
# one core is all it can have.
sink_ticks() {
  local pid
  pid=$(pgrep -P "$sink_pid" -x smtp-sink | head -1)
  awk '{ print $14 + $15 }' "/proc/${pid:-0}/stat" 2>/dev/null || echo 0
}

run_one() { # mode c -> prints "msgs_per_s rss_kb cpu_us_per_msg machine_us_per_msg idle_percent sink_us_per_msg"
  local mode=$1 c=$2 n=$N before after start end rss user sys busy0 idle0 busy1 idle1 sink0 sink1
  case $mode in nodemailer | mailmerge) n=$PEER_N ;; esac
  before=$(received)
  rm -f "$WORK"/project/newsletter.db* "$WORK/time.txt"
  local send=("$BIN" -q --config "$WORK/project/newsletter.toml" send --connections "$c")
  read -r busy0 idle0 < <(machine_ticks)
  sink0=$(sink_ticks)
  start=$(date +%s%N)
  case $mode in
    limit) timed smtp-source -d -s "$c" -m "$n" -F "$EML" "127.0.0.1:$PORT" ;;
    journal) timed "${send[@]}" ;;
    nojournal) timed "${send[@]}" --no-journal ;;
    dkim) timed "$BIN" -q --config "$WORK/project/dkim.toml" send --connections "$c" ;;
    baseline) timed "$BASELINE_BIN" -q --config "$WORK/project/newsletter.toml" send --connections "$c" ;;
    dkimbaseline) timed "$BASELINE_BIN" -q --config "$WORK/project/dkim.toml" send --connections "$c" ;;
    starttls) timed "$BIN" -q --config "$WORK/project/tls.toml" send --connections "$c" ;;
    nodemailer) timed node "$WORK/node/send.js" "$PORT" "$n" "$c" "$EML" ;;
    mailmerge) (cd "$WORK/mm" && timed "$WORK/venv/bin/mailmerge" --template template.txt \
             --database database.csv --config server.conf --no-dry-run --no-limit --output-format raw) ;;
    *) die "unknown mode $mode" ;;
  esac
  end=$(date +%s%N)
  read -r busy1 idle1 < <(machine_ticks)
  sink1=$(sink_ticks)
  sleep 0.3 # the sink's counter line is written as messages complete
  after=$(received)
  read -r rss user sys < <(tail -1 "$WORK/time.txt")
  if (( after - before != n )); then
    echo "run of $mode at C=$c delivered $((after - before)) of $n" >&2
    echo "NA $rss NA NA NA NA"
    return
  fi
  # The sender's own CPU (user + system) per message: steadier than the rate on a shared
  # machine, and what the journal adds on a machine whose two cores are both busy. The
  # machine's (every process, the sink's and the kernel's work included; in a virtual
  # machine a disk flush also costs CPU outside the process that asked for it) per message,
  # and the share of the cores left idle: whether the CPU had room. The sink's per message:
  # 1e6 over it is the most it can take on the one core it can use.
  awk -v n="$n" -v ns="$((end - start))" -v rss="$rss" -v user="$user" -v sys="$sys" \
    -v busy="$((busy1 - busy0))" -v idle="$((idle1 - idle0))" -v hz="$(getconf CLK_TCK)" \
    -v sink="$((sink1 - sink0))" \
    'BEGIN { printf "%.1f %s %.0f %.0f %.0f %.0f\n", n / (ns / 1e9), rss, (user + sys) / n * 1e6,
             busy / hz / n * 1e6, (busy + idle > 0) ? 100 * idle / (busy + idle) : 0,
             sink / hz / n * 1e6 }'
}

# One fdatasync as the send log makes it: a small record written into a file already
# filled with zeros, on the disk the project is on, 1,000 times back to back. Prints the
# median wall time in µs, and the CPU the machine spent per fdatasync (all cores, from
# /proc/stat: in a virtual machine the flush's exits and interrupts cost CPU outside the
# calling process).
fdatasync_us() {
  python3 "$ROOT/bench/sync_floor.py" --alone 1000 --probe "$WORK/fdatasync.probe"
}

median() { printf '%s\n' "$@" | grep -v NA | sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "NA"; exit} print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
spread() { printf '%s\n' "$@" | grep -v NA | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {if (NR==0) print "NA"; else printf "%s-%s", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.3f", a / b }'; }

# System calls per message of one journaled send of SYSCALL_N messages at C, by `bin`.
syscalls() { # bin c -> "fsync writes locks" per message
  local bin=$1 c=$2
  python3 "$ROOT/bench/make_project.py" --dir "$WORK/sys" --n "$SYSCALL_N" --port "$PORT" --connections "$c" >/dev/null
  rm -f "$WORK"/sys/newsletter.db*
  strace -f -qq -c -o "$WORK/strace.txt" -e trace=fsync,fdatasync,pwrite64,write,writev,fcntl \
    timeout "$LIMIT_SECONDS" "$bin" -q --config "$WORK/sys/newsletter.toml" send --connections "$c" >/dev/null
  awk -v n="$SYSCALL_N" '
    $NF == "fsync" || $NF == "fdatasync" { s += $(NF-1) - 0 }
    $NF == "pwrite64" { w += $(NF-1) }
    $NF == "fcntl" { l += $(NF-1) }
    END { printf "%.2f %.2f %.2f", s / n, w / n, l / n }' "$WORK/strace.txt"
}

install_tools
prepare
start_sink
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); N=$N messages of $(stat -c %s "$EML") bytes (peers: $PEER_N at C=$PEER_C), C in {$CS}, $RUNS rounds, order reversed on even rounds$([[ "$PIN" == 1 ]] && echo "; the relay on CPU 0, the clients on CPU 1")"
runs=()
for c in $CS; do for mode in $MODES; do runs+=("$mode $c"); done; done
for peer in $PEERS; do runs+=("$peer $PEER_C"); done
declare -A results round_of cpus machines idles sinks
syncs=""
sync_cpus=""
floors=""
floor_alones=""
for r in $(seq "$RUNS"); do
  order=("${runs[@]}")
  if (( r % 2 == 0 )); then
    order=(); for (( i=${#runs[@]}-1; i>=0; i-- )); do order+=("${runs[$i]}"); done
  fi
  read -r sync_us sync_cpu < <(fdatasync_us)
  syncs+="$sync_us "
  sync_cpus+="$sync_cpu "
  printf 'round %d  one fdatasync of the send log: %s µs, %s µs of CPU\n' "$r" "$sync_us" "$sync_cpu"
  if (( FLOOR_N > 0 )); then
    # The same sync in a minimal client, between each 354 and its content: what one sync per
    # message costs any sender at one connection here (bench/sync_floor.py).
    first=(); (( r % 2 == 0 )) && first=(--sync-first)
    read -r f_none f_sync f_added f_alone < <(python3 "$ROOT/bench/sync_floor.py" --port "$PORT" \
      --n "$FLOOR_N" --message "$EML" --probe "$WORK/floor.probe" "${first[@]}")
    floors+="$f_added "
    floor_alones+="$f_alone "
    printf 'round %d  a minimal client, one connection: %s µs/msg, %s with one sync per message (+%s; that sync alone %s µs)\n' \
      "$r" "$f_none" "$f_sync" "$f_added" "$f_alone"
  fi
  for run in "${order[@]}"; do
    read -r mode c <<<"$run"
    read -r rate rss cpu machine idle sink < <(run_one "$mode" "$c")
    results["$mode $c"]+="$rate "
    cpus["$mode $c"]+="$cpu "
    machines["$mode $c"]+="$machine "
    idles["$mode $c"]+="$idle "
    sinks["$mode $c"]+="$sink "
    round_of["$mode $c $r"]=$rate
    printf 'round %d  %-10s C=%-3s %10s msgs/s  peak RSS %s KB  %s µs CPU/msg  machine %s µs/msg, %s%% idle  sink %s µs/msg\n' \
      "$r" "$mode" "$c" "$rate" "$rss" "$cpu" "$machine" "$idle" "$sink"
  done
done
echo "---"
for run in "${runs[@]}"; do
  read -r mode c <<<"$run"
  # shellcheck disable=SC2086
  med=$(median ${results[$run]})
  # shellcheck disable=SC2086
  cpu=$(median ${cpus[$run]})
  # shellcheck disable=SC2086
  machine=$(median ${machines[$run]})
  # shellcheck disable=SC2086
  idle=$(median ${idles[$run]})
  # shellcheck disable=SC2086
  sink=$(median ${sinks[$run]})
  # shellcheck disable=SC2086
  printf 'median     %-10s C=%-3s %10s msgs/s  spread %s  CPU %s µs/msg (%s)  machine %s µs/msg, %s%% idle  sink %s µs/msg\n' "$mode" "$c" "$med" "$(spread ${results[$run]})" \
    "$cpu" "$(spread ${cpus[$run]})" "$machine" "$idle" "$sink"
  declare "sink_${mode}_${c}=$sink"
  declare "cpu_${mode}_${c}=$cpu"
  declare "machine_${mode}_${c}=$machine"
  declare "idle_${mode}_${c}=$idle"
  declare "med_${mode}_${c}=$med"
  for r in $(seq "$RUNS"); do
    v=${round_of["$run $r"]}
    if [[ "$v" != NA && "$med" != NA ]] && awk -v v="$v" -v m="$med" 'BEGIN { exit !(v < 0.75 * m) }'; then
      echo "           round $r of $mode at C=$c: $v msgs/s, under 0.75 x the median: disturbed by other load?"
    fi
  done
done
echo "---"
for c in $CS; do
  j="med_journal_$c"; l="med_limit_$c"; nj="med_nojournal_$c"; d="med_dkim_$c"; t="med_starttls_$c"
  echo "C=$c: journal/limit $(ratio "${!j:-NA}" "${!l:-NA}")  journal/nojournal $(ratio "${!j:-NA}" "${!nj:-NA}")  dkim/journal $(ratio "${!d:-NA}" "${!j:-NA}")  starttls/journal $(ratio "${!t:-NA}" "${!j:-NA}")"
done
# shellcheck disable=SC2086
sync_med=$(median $syncs)
# shellcheck disable=SC2086
echo "one fdatasync: median $sync_med µs, spread $(spread $syncs) (one per round)"
# shellcheck disable=SC2086
sync_cpu_med=$(median $sync_cpus)
# shellcheck disable=SC2086
echo "CPU of one fdatasync (all cores): median $sync_cpu_med µs, spread $(spread $sync_cpus)"
for c in $CS; do
  j="cpu_journal_$c"; nj="cpu_nojournal_$c"
  if [[ "${!j:-NA}" != NA && "${!nj:-NA}" != NA ]]; then
    # Each connection needs one sync per message (the next message's `attempting`, before
    # the current one's final dot: at most one message in doubt per connection), so 1/C
    # syncs per message at best.
    awk -v j="${!j}" -v nj="${!nj}" -v s="$sync_cpu_med" -v c="$c" 'BEGIN {
      printf "C=%s: the sender'"'"'s CPU per message: journal %s µs, no journal %s µs (+%.0f); the syncs alone, one per C messages at best: %.0f µs\n", c, j, nj, j - nj, s / c }'
  fi
  mj="machine_journal_$c"; mnj="machine_nojournal_$c"; ij="idle_journal_$c"; inj="idle_nojournal_$c"
  if [[ "${!mj:-NA}" != NA && "${!mnj:-NA}" != NA ]]; then
    awk -v j="${!mj}" -v nj="${!mnj}" -v ij="${!ij}" -v inj="${!inj}" -v c="$c" 'BEGIN {
      printf "C=%s: the machine'"'"'s CPU per message (all processes): journal %s µs, no journal %s µs (+%.0f); cores idle %s%% and %s%% of the run\n", c, j, nj, j - nj, ij, inj }'
  fi
  # The sink is one process: at its CPU per message, one core takes at most 1e6 / it
  # messages a second. A rate close to that is the sink's limit, not the sender's.
  line=""
  for mode in limit journal nojournal; do
    sk="sink_${mode}_$c"; md="med_${mode}_$c"
    if [[ "${!sk:-NA}" != NA && "${!sk:-0}" != 0 && "${!md:-NA}" != NA ]]; then
      line+=$(awk -v m="$mode" -v s="${!sk}" -v r="${!md}" 'BEGIN {
        printf "  %s %s µs (%.0f msgs/s at most; the run at %.0f%% of it)", m, s, 1e6 / s, 100 * r * s / 1e6 }')
    fi
  done
  [[ -n "$line" ]] && echo "C=$c: the sink's CPU per message:$line"
done
for c in $CS; do
  j="med_journal_$c"; nj="med_nojournal_$c"
  if [[ "${!j:-NA}" != NA && "${!nj:-NA}" != NA ]]; then
    # A connection's cycle is C messages' time without the journal. Had its sync sat
    # between a message's reply and the next content, one sync more in that cycle would
    # bound the ratio; it runs while the content travels instead (the final dot waits).
    awk -v j="${!j}" -v nj="${!nj}" -v s="$sync_med" -v c="$c" 'BEGIN {
      d = 1e6 / j - 1e6 / nj
      printf "C=%s: the journal adds %.0f µs per message (%.0f against %.0f); one fdatasync is %s µs: %s\n", c, d, 1e6 / j, 1e6 / nj, s, (d <= s) ? "within it" : "more than it"
      cycle = c * 1e6 / nj
      printf "C=%s: a connection'"'"'s message takes %.0f µs without the journal; one fdatasync on its path would bound journal/nojournal at %.3f (measured %.3f)\n", c, cycle, cycle / (cycle + s), j / nj }'
  fi
done
if [[ -n "$floors" ]]; then
  # shellcheck disable=SC2086
  floor_med=$(median $floors)
  # shellcheck disable=SC2086
  echo "one sync per message in a minimal client at C=1 adds $floor_med µs per message (spread $(spread $floors)); that sync alone: $(median $floor_alones) µs (spread $(spread $floor_alones))"
  if [[ "${med_journal_1:-NA}" != NA && "${med_nojournal_1:-NA}" != NA ]]; then
    awk -v j="$med_journal_1" -v nj="$med_nojournal_1" -v f="$floor_med" 'BEGIN {
      d = 1e6 / j - 1e6 / nj
      printf "C=1: the journal adds %.0f µs per message; the same sync adds %s µs to the minimal client: %s\n", d, f, (d <= f) ? "within it" : "more than it" }'
  fi
fi
if [[ " $MODES " == *" baseline "* ]]; then
  for c in $CS; do
    # Paired by round: both ran in the same round, next to each other.
    pairs=""
    for r in $(seq "$RUNS"); do
      pairs+="$(ratio "${round_of["journal $c $r"]:-NA}" "${round_of["baseline $c $r"]:-NA}") "
    done
    # shellcheck disable=SC2086
    echo "C=$c: journal / baseline, paired by round: median $(median $pairs), spread $(spread $pairs); CPU per message $(eval echo "\${cpu_journal_$c:-NA}") against $(eval echo "\${cpu_baseline_$c:-NA}") µs"
  done
fi
for peer in $PEERS; do
  j="med_journal_$PEER_C"; p="med_${peer}_$PEER_C"
  echo "journal at C=$PEER_C / $peer: $(ratio "${!j:-NA}" "${!p:-NA}")"
done
if [[ -n "$SYSCALL_N" && "$SYSCALL_N" != 0 ]]; then
  echo "--- system calls per message (strace -c, $SYSCALL_N messages): fsync+fdatasync, pwrite64, fcntl"
  for c in $CS; do
    echo "C=$c  newsletter: $(syscalls "$BIN" "$c")"
    if [[ -n "${BASELINE_BIN:-}" ]]; then echo "C=$c  baseline:   $(syscalls "$BASELINE_BIN" "$c")"; fi
  done
fi
