#!/usr/bin/env bash
# `lull run` with ACCOUNTS accounts (default 100,000) and two years of
# history: its resident memory at start, during and after a detection run,
# and the time from SIGTERM to exit, idle and in the middle of a detection
# run (the heaviest work the service does).
#
#   benches/service.sh [ACCOUNTS]
#   SRC=bench-out/compact-100000 benches/service.sh
#   CACHE_MB=16 benches/service.sh     (store.cache_mb; default: lull's)
#   BIN=/tmp/lull-old benches/service.sh (another build, to compare two)
#
# Uses the store `cargo bench --bench detect` builds (bench-out/detect-people-N),
# copied, so that run is not changed. Linux only (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
bin=${BIN:-target/release/lull}
[ -n "${BIN:-}" ] || cargo build --release -q
# SRC: another folder with lull.db and accounts.toml (e.g. a store
# compacted by export + import).
src=${SRC:-bench-out/detect-people-$n}
if [ ! -d "$src/lull.db" ]; then
  cargo bench --bench detect -- --phase build "$n"
fi
work=bench-out/service-$n
rm -rf "$work" && mkdir -p "$work"
cp -r "$src/lull.db" "$src/accounts.toml" "$work/"
port=19287
write_config() { # $1: time zone
  # Every second: the start-up catch-up runs detection once, later ticks
  # find the day judged and do nothing.
  cat > "$work/lull.toml" <<TOML
timezone = "$1"
[store]
path = "lull.db"
${CACHE_MB:+cache_mb = $CACHE_MB}
[accounts]
file = "accounts.toml"
[service]
detect_schedule = "* * * * * *"
[http]
listen = "127.0.0.1:$port"
TOML
}
rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm() { awk '/^VmHWM/ {print int($2/1024)}' "/proc/$1/status" 2>/dev/null || echo 0; }

start() { # starts lull run; sets $pid
  : > "$work/run.log"
  "$bin" --config "$work/lull.toml" run 2>> "$work/run.log" &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.05; done
}
stop_and_time() { # SIGTERM; sets $took (seconds to exit)
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  t1=$(date +%s.%N)
  [ "$rc" -eq 0 ] || { echo "lull run exited $rc" >&2; exit 1; }
  took=$(echo "$t1 - $t0" | bc)
}

# 1. First start on this store: detection has never run, so it replays
# the whole history of every account (the heaviest case). In the zone
# where it is earliest, so that step 2 finds a later day to judge.
write_config Pacific/Pago_Pago
start
echo "started: RSS $(rss $pid) MiB"
peak=0
until grep -q "detection done.*seconds=" "$work/run.log"; do
  r=$(rss $pid); [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.2
done
echo "first detection (full replay): $(grep 'detection done' "$work/run.log" | grep -o 'seconds=[0-9.]*' | tail -1), peak RSS $(hwm $pid) MiB (sampled $peak)"
# A new folder has no backup: the day's backup is written at start, beside
# that first run (at 100k: ~1.5 GB in ~30 s; the run alone takes ~11 s).
if grep -q "backup written" "$work/run.log"; then
  echo "  (the start-up backup ran beside it: $(grep -o 'bytes=[0-9]*' "$work/run.log" | tail -1))"
fi
sleep 10
echo "idle 10 s after it: RSS $(rss $pid) MiB"
stop_and_time
echo "SIGTERM → exit, idle: $took s"

# 2. A day later (the zone where it is latest, a day or two ahead): the
# daily run from saved state.
write_config Pacific/Kiritimati
start
until grep -q "detection done.*seconds=" "$work/run.log"; do sleep 0.2; done
echo "daily detection: $(grep 'detection done' "$work/run.log" | grep -o 'seconds=[0-9.]*' | tail -1), peak RSS $(hwm $pid) MiB"
sleep 10
echo "idle after it: RSS $(rss $pid) MiB"
stop_and_time
echo "SIGTERM → exit, idle: $took s"

# 3. SIGTERM in the middle of a detection run.
rm -rf "$work/lull.db" && cp -r "$src/lull.db" "$work/"
write_config UTC
start
until grep -q "did not run while lull was down" "$work/run.log"; do sleep 0.05; done
sleep 2
stop_and_time
echo "SIGTERM → exit, 2 s into a detection run: $took s"
grep -E "abandoned|stopped cleanly" "$work/run.log" | tail -2
