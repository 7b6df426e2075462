#!/usr/bin/env bash
# The cost of windows: hapwatch run on the 12,001-row dump (N = 2000 backends x 5 servers,
# benches/gen-haproxy-cfg.sh, captured once with `show info;show stat` from a real
# haproxy), read from a file, with the default rules alone and with the default rules plus
# one 5-minute-window rule on every server row. Each config first runs WARM times with
# `--now` advancing 60 s (so the window is covered and its history full), then RUNS timed
# runs (benches/rusage.py: wall, user+sys) and RUNS runs under GNU time (peak RSS), and
# one run under callgrind (instructions, exact and independent of the machine's load).
# Prints a Markdown table; the state file size is measured after the runs.
#
# usage: benches/window.sh        (HAPWATCH_BIN=path to skip `cargo build --release`)
set -euo pipefail
RUNS=${RUNS:-15}
WARM=${WARM:-7}
N=${N:-2000}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
py=$(command -v /usr/bin/python3 || command -v python3)
if [ -z "${HAPWATCH_BIN:-}" ]; then
    (cd "$repo" && cargo build --release -q)
    HAPWATCH_BIN=${CARGO_TARGET_DIR:-$repo/target}/release/hapwatch
fi
d=$(mktemp -d)
trap 'kill "$(cat "$d/hap.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$d"' EXIT
cp "$HAPWATCH_BIN" "$d/hapwatch"
bin=$d/hapwatch
FE_PORT=${FE_PORT:-28080} SRV_PORT=${SRV_PORT:-29001} DOWN_PORT=${DOWN_PORT:-29999} \
    sh "$here/gen-haproxy-cfg.sh" "$N" "$d" >/dev/null
haproxy -f "$d/haproxy.cfg" -D -p "$d/hap.pid"
for _ in $(seq 50); do [ -S "$d/admin.sock" ] && break; sleep 0.1; done
sleep 1
echo "show info;show stat" | socat stdio "unix-connect:$d/admin.sock" >"$d/dump.txt"
kill "$(cat "$d/hap.pid")"
rows=$(grep -c '^[^#].*,' "$d/dump.txt" || true)

config() { # file, extra rules
    printf 'include = ["%s"]\n\n[state]\nfile = "%s"\n\n[[source]]\nname = "big"\nfile = "%s"\n%s\n' \
        "$repo/config/rules.toml" "$1.state.json" "$d/dump.txt" "$2" >"$1"
}
config "$d/default.toml" ""
config "$d/window.toml" '
[[rule]]
name = "ServerSessionRate5m"
scope = { type = "server" }
when = '"'"'rate(stot, 5m) > 100'"'"'
'
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
t=1800000000
echo "| rules | wall ms | CPU user+sys ms | peak RSS MiB | instructions (callgrind) | state file bytes |"
echo "|---|---:|---:|---:|---:|---:|"
for name in default window; do
    c=$d/$name.toml
    for _ in $(seq "$WARM"); do "$bin" -c "$c" run --now "$t" >/dev/null; t=$((t + 60)); done
    "$py" "$here/rusage.py" --seq "$t" 60 "$RUNS" "$bin" -c "$c" run --now @NOW@ >"$d/$name.rus"
    t=$((t + 60 * RUNS))
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f '%M' -o "$d/$name.time" -a "$bin" -c "$c" run --now "$t" >/dev/null
        t=$((t + 60))
    done
    valgrind --tool=callgrind --callgrind-out-file="$d/$name.cg" "$bin" -c "$c" run --now "$t" \
        >/dev/null 2>"$d/$name.vg"
    t=$((t + 60))
    ir=$(grep -o 'Collected : [0-9]*' "$d/$name.vg" | grep -o '[0-9]*$')
    wall=$(awk '{ print $1 }' "$d/$name.rus" | median)
    cpu=$(awk '{ print $2 + $3 }' "$d/$name.rus" | median)
    rss=$(median <"$d/$name.time")
    size=$(stat -c %s "$c.state.json")
    if [ "$name" = default ]; then label="default rules"; else label="default rules + \`rate(stot, 5m) > 100\` on every server"; fi
    printf '| %s | %.2f | %.2f | %.1f | %s | %s |\n' "$label" "$wall" "$cpu" "$(echo "$rss / 1024" | bc -l)" "$ir" "$size"
done
echo
echo "Dump: $rows rows ($(stat -c %s "$d/dump.txt") bytes), $N backends; $WARM warm-up runs, $RUNS timed runs, medians."
if [ -n "${KEEP:-}" ]; then cp "$d"/*.state.json "${KEEP}"; fi
