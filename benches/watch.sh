#!/usr/bin/env bash
# Standing cost and memory of `hapwatch watch` against real HAProxy processes (loopback,
# unix admin socket, configs from benches/gen-haproxy-cfg.sh). Prints markdown for
# benches/RESULTS.md ("Watch mode").
#
# usage: benches/watch.sh            (HAPWATCH_BIN=PATH to use a built binary)
#
#   cost N     `watch --every 2s` with the default rules (config/rules.toml) on one haproxy of
#              N backends x 5 servers, warm-up WARM seconds, then CPU (utime + stime of the
#              process, /proc/PID/stat) over MEASURE seconds → CPU s/min, and RSS (VmRSS;
#              VmHWM = peak) at the end. N = 2000 (12,001 rows) and N = 16 (97 rows).
#   memory     `watch --every 10ms` on a haproxy of N = 1 (7 rows), default rules, -v: VmRSS
#              when the stderr shows cycle 100, 1,000, 5,000 and 10,000.
# Environment: WARM=20 MEASURE=60 CYCLES=10000.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
WARM=${WARM:-20}
MEASURE=${MEASURE:-60}
CYCLES=${CYCLES:-10000}
bin=${HAPWATCH_BIN:-}
if [ -z "$bin" ]; then
    (cd "$repo" && cargo build --release --quiet)
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/hapwatch
fi
t=$(mktemp -d /tmp/hapwatch-watch-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for pf in "$t"/*/haproxy.pid; do [ -f "$pf" ] && kill "$(cat "$pf")" 2>/dev/null || true; done
    rm -rf "$t"
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_haproxy DIR N
start_haproxy() {
    local dir=$1 n=$2
    FE_PORT=$(free_port) DOWN_PORT=$(free_port) SRV_PORT=$(free_port) \
        "$here/gen-haproxy-cfg.sh" "$n" "$dir" >/dev/null
    haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"
    for _ in $(seq 100); do
        echo "show info" | socat -t 5 stdio "unix-connect:$dir/admin.sock" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "watch.sh: haproxy in $dir never answered" >&2
    exit 1
}

write_config() {
    local dir=$1
    cat >"$dir/hapwatch.toml" <<TOML
include = ["$repo/config/rules.toml"]

[[source]]
name = "lb1"
socket = "$dir/admin.sock"
timeout = "30s"

[state]
file = "$dir/state.json"
TOML
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

echo "| case | rows | cycles | CPU s/min | RSS MiB (end) | peak RSS MiB |"
echo "|---|---|---|---|---|---|"
for n in 2000 16; do
    d=$t/n$n
    mkdir -p "$d"
    start_haproxy "$d" "$n"
    write_config "$d"
    rows=$(echo "show stat" | socat -t 30 stdio "unix-connect:$d/admin.sock" | awk -F, '!/^#/ && NF > 1 { r++ } END { print r }')
    "$bin" -c "$d/hapwatch.toml" -v watch --every 2s >/dev/null 2>"$d/watch.stderr" &
    wp=$!
    pids+=("$wp")
    sleep "$WARM"
    c0=$(cpu_ticks "$wp")
    k0=$(grep -c '^hapwatch: cycle [0-9]*: ' "$d/watch.stderr" || true)
    sleep "$MEASURE"
    c1=$(cpu_ticks "$wp")
    k1=$(grep -c '^hapwatch: cycle [0-9]*: ' "$d/watch.stderr" || true)
    rss=$(status_kib "$wp" VmRSS)
    hwm=$(status_kib "$wp" VmHWM)
    kill -TERM "$wp"
    wait "$wp" || true
    awk -v n="$n" -v rows="$rows" -v k=$((k1 - k0)) -v c=$((c1 - c0)) -v hz="$hz" -v m="$MEASURE" -v rss="$rss" -v hwm="$hwm" \
        'BEGIN { printf "| watch --every 2s, N = %d | %d | %d | %.3f | %.1f | %.1f |\n", n, rows, k, c / hz * 60 / m, rss / 1024, hwm / 1024 }'
    kill "$(cat "$d/haproxy.pid")"
done

echo
echo "| memory: watch --every 10ms, 7 rows | after cycle | VmRSS KiB | VmHWM KiB |"
echo "|---|---|---|---|"
d=$t/n1
mkdir -p "$d"
start_haproxy "$d" 1
write_config "$d"
"$bin" -c "$d/hapwatch.toml" -v watch --every 10ms >/dev/null 2>"$d/watch.stderr" &
wp=$!
pids+=("$wp")
started=$(date +%s)
for at in 100 1000 5000 "$CYCLES"; do
    while ! grep -q "^hapwatch: cycle $at: " "$d/watch.stderr"; do sleep 0.05; done
    echo "| | $at | $(status_kib "$wp" VmRSS) | $(status_kib "$wp" VmHWM) |"
done
ended=$(date +%s)
kill -TERM "$wp"
wait "$wp" || true
echo
echo "$CYCLES cycles in $((ended - started)) s; stderr lines other than cycle lines: $(grep -vc '^hapwatch: cycle \|^hapwatch: watch: ' "$d/watch.stderr" || true)"
