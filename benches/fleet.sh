#!/bin/bash
# Issue 21, item 5: one hapwatch run over 100 sources (20 real haproxy processes x 5
# stats sockets each, N backends x 5 servers per process) vs the same 100 raw
# `show info;show stat` dumps by socat at the same concurrency (xargs -P PAR).
# Paired (benches/pair.py: A and B alternately) so both see the same machine load.
#
# usage: benches/fleet.sh            (env: PROCS=20 SOCKS=5 N=20 PAR=16 RUNS=10
#                                     HAPWATCH_BIN=target/release/hapwatch)
# Prints a Markdown block for benches/RESULTS.md on stdout.
set -euo pipefail
PROCS=${PROCS:-20}
SOCKS=${SOCKS:-5}
N=${N:-20}
PAR=${PAR:-16}
RUNS=${RUNS:-10}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${HAPWATCH_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/hapwatch}
py=$(command -v /usr/bin/python3 || command -v python3)
out=$(mktemp -d /tmp/hapwatch-fleet-bench.XXXXXX)
cleanup() {
    for pf in "$out"/p*/haproxy.pid; do
        [ -s "$pf" ] && kill "$(cat "$pf")" 2>/dev/null || true
    done
    rm -rf "$out"
}
trap cleanup EXIT
ports=($("$py" -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*(x.getsockname()[1] for x in s))' $((2 * PROCS))))
socks=()
cfg=$out/hapwatch.toml
printf 'include = ["%s"]\nmax_parallel_sources = %s\n\n[state]\nfile = "%s"\n' \
    "$repo/config/rules.toml" "$PAR" "$out/state.json" >"$cfg"
for i in $(seq 1 "$PROCS"); do
    d=$out/p$i
    mkdir -p "$d"
    FE_PORT=${ports[$((2 * i - 2))]} DOWN_PORT=${ports[$((2 * i - 1))]} \
        "$here/gen-haproxy-cfg.sh" "$N" "$d" >/dev/null
    # SOCKS stats sockets per process: the first is admin.sock, the others s2..sK.sock.
    extra=""
    for k in $(seq 2 "$SOCKS"); do
        extra="$extra    stats socket $d/s$k.sock mode 600 level user\\n"
    done
    sed -i "s|^\(    stats socket .*admin.sock.*\)$|\1\n${extra%\\n}|" "$d/haproxy.cfg"
    haproxy -f "$d/haproxy.cfg" -D -p "$d/haproxy.pid"
    for k in $(seq 1 "$SOCKS"); do
        s=$d/s$k.sock
        [ "$k" = 1 ] && s=$d/admin.sock
        socks+=("$s")
        printf '\n[[source]]\nname = "lb%02d-%d"\nsocket = "%s"\ntimeout = "10s"\n' "$i" "$k" "$s" >>"$cfg"
    done
done
for s in "${socks[@]}"; do
    for _ in $(seq 100); do
        [ -S "$s" ] && printf 'show info\n' | socat -t 5 stdio "unix-connect:$s" >/dev/null 2>&1 && break
        sleep 0.1
    done
done
printf '%s\n' "${socks[@]}" >"$out/socks.txt"
rows=$(printf 'show stat\n' | socat stdio "unix-connect:${socks[0]}" | awk -F, '!/^#/ && NF > 1 { r++ } END { print r }')
# Warm the state (first run announces everything).
"$bin" -c "$cfg" run --now 1800000000 >/dev/null 2>&1 || true
raw="xargs -P $PAR -I{} sh -c 'printf \"show info;show stat\\n\" | socat -t 10 stdio unix-connect:{} >/dev/null' < $out/socks.txt"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
pairs=$("$py" "$here/pair.py" "$RUNS" 1800000060 60 -- sh -c "$raw" -- "$bin" -c "$cfg" run --now @NOW@)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
rss_raw=$(/usr/bin/time -f %M sh -c "$raw" 2>&1 >/dev/null | tail -1)
rss_run=$(/usr/bin/time -f %M "$bin" -c "$cfg" run --now 1800009000 2>&1 >/dev/null | tail -1)
state_size=$(stat -c %s "$out/state.json")
# Every source must have been read: no SourceUnreachable in the state.
unreachable=$( (grep -o '"alertname": *"SourceUnreachable"' "$out/state.json" || true) | wc -l)
echo "$pairs" | awk -v procs="$PROCS" -v socks="$SOCKS" -v n="$N" -v par="$PAR" -v rows="$rows" \
    -v rr="$rss_raw" -v rh="$rss_run" -v st="$state_size" -v un="$unreachable" -v lb="$load_before" -v la="$load_after" \
    -v nproc="$(nproc)" '
    { wa[NR] = $1; ca[NR] = $2; wb[NR] = $3; cb[NR] = $4; r[NR] = $3 / $1 }
    function median(a, k,   i, j, t, b) { for (i = 1; i <= k; i++) b[i] = a[i]
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
        return k % 2 ? b[(k + 1) / 2] : (b[k / 2] + b[k / 2 + 1]) / 2 }
    END {
        k = NR
        printf "### 100 sources in one run (issue 21)\n\n"
        printf "%d haproxy 2.6 processes x %d stats sockets = %d sources, %d rows each (N = %d backends x 5 servers); max_parallel_sources = %d, raw dumps by `xargs -P %d socat`. %d pairs (benches/pair.py), medians. %d CPUs; load average (1, 5, 15 min) %s before, %s after.\n\n", procs, socks, procs * socks, rows, n, par, par, k, nproc, lb, la
        printf "| | wall ms | CPU ms (user+sys) | peak RSS KiB |\n|---|---|---|---|\n"
        printf "| A: %d raw socat dumps, %d at a time (sh + xargs + socat) | %.1f | %.1f | %s (largest one process) |\n", procs * socks, par, median(wa, k), median(ca, k), rr
        printf "| B: hapwatch run, %d sources (warm state) | %.1f | %.1f | %s |\n", procs * socks, median(wb, k), median(cb, k), rh
        printf "\nPaired wall ratio B/A: median %.2f. State file after the runs: %d bytes; sources unreachable: %d.\n", median(r, k), st, un
    }'
