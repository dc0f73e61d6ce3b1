#!/usr/bin/env bash
# Benchmark `lull import` and `lull export` on a generated workload.
#
#   benches/import.sh [EVENTS] [ACCOUNTS] [ORDER]   (defaults: 1000000 10000 random;
#                                                   ORDER random or time)
#
# Prints wall time, events/s and peak RSS for a first import (dedupe on),
# a second import of the same file (every event a duplicate), and export.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
accounts=${2:-10000}
order=${3:-random}
out=bench-out/import-$events-$order
cargo build --release --quiet
if [ ! -f "$out/events.jsonl" ]; then
  python3 benches/gen_events.py "$out" --events "$events" --accounts "$accounts" --order "$order"
fi
rm -rf "$out/data"
lull="$PWD/target/release/lull --config $out/lull.toml"
size=$(du -h "$out/events.jsonl" | cut -f1)
echo "workload: $events events ($size, $order order), $accounts accounts"

measure() { # label, command...
  local label=$1; shift
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o /tmp/lull-bench-rss "$@" >/tmp/lull-bench-out 2>/tmp/lull-bench-err || true
  t1=$(date +%s.%N)
  rss=$(tail -n1 /tmp/lull-bench-rss)
  python3 - "$label" "$t0" "$t1" "$rss" "$events" <<'PY'
import sys
label, t0, t1, rss, n = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = t1 - t0
print(f"{label:<22} {s:7.2f} s  {n / s:>12,.0f} events/s  peak RSS {rss / 1024:6.1f} MiB")
PY
}
measure "import (fresh store)" $lull import "$out/events.jsonl"
tail -n 3 /tmp/lull-bench-err
measure "import (all repeats)" $lull import "$out/events.jsonl"
t0=$(date +%s.%N)
/usr/bin/time -f '%M' -o /tmp/lull-bench-rss $lull export >/tmp/lull-bench-export
t1=$(date +%s.%N)
lines=$(wc -l </tmp/lull-bench-export)
python3 -c "import sys; s=$t1-$t0; print(f'export                 {s:7.2f} s  {$lines/s:>12,.0f} lines/s   ({$lines} lines, peak RSS {int(open(\"/tmp/lull-bench-rss\").read().split()[-1])/1024:.1f} MiB)')"
du -sh "$out/data/lull.db" | sed 's/^/store size: /'
