# Helpers shared by the bench scripts (sourced, not run).

die() { echo "error: $*" >&2; exit 2; }

# The median and the spread (lowest-highest) of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%s-%s", lo, hi}'; }

# command... -> its elapsed milliseconds (60 s at most), its output dropped.
ms() {
  local start end
  start=$(date +%s%N)
  timeout 60 "$@" >/dev/null
  end=$(date +%s%N)
  awk -v ns="$((end - start))" 'BEGIN { printf "%.1f", ns / 1e6 }'
}

# Postfix's smtp-sink on 127.0.0.1:PORT (installed when missing), stopped when the script
# exits; waits until it listens.
start_sink() { # port
  "$ROOT/.ci/install" postfix
  command -v smtp-sink >/dev/null || PATH="$PATH:/usr/sbin"
  if ss -Hltn "sport = :$1" | grep -q .; then die "port $1 is in use; set PORT"; fi
  timeout 3600 smtp-sink -u nobody "127.0.0.1:$1" 64 >/dev/null 2>&1 &
  sink=$!
  trap 'kill $sink 2>/dev/null; wait 2>/dev/null || true' EXIT
  for _ in $(seq 50); do ss -Hltn "sport = :$1" | grep -q . && break; sleep 0.1; done
}
