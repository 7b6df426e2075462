#!/usr/bin/env bash
# End-to-end benchmark of `hapwatch show --format json` against a big live HAProxy.
#
# usage: benches/show.sh [N]          (N backends x 5 servers; default 2000 -> 12,001 rows)
#
# Steps: build hapwatch (cargo build --release; cargo skips it when up to date), generate
# a config with benches/gen-haproxy-cfg.sh, start haproxy on 127.0.0.1 with an admin unix
# socket in a temp dir, capture the raw `show info;show stat` reply to OUTDIR/dump.txt,
# then time each case RUNS times and print medians:
#   (a) floor: socat reading `show stat` to /dev/null
#   (b) hapwatch show --format json > /dev/null, live socket
#   (c) the same against the captured file
#   (d) hapwatch check --connect against the captured file (fetch + parse, no rendering)
#   (e) hapwatch --version (process startup)
# Each case is timed twice: with GNU time (`/usr/bin/time -f '%e %U %S %M'`, which
# prints 10 ms steps) and with benches/rusage.py (os.wait4 on the command, microsecond
# steps). Finally the in-process micro-benchmarks (benches/micro.rs, divan) run on the captured
# dump. Numbers only: nothing here asserts a timing.
#
# Environment:
#   RUNS=15            runs per case and per timer (minimum 10)
#   HAPWATCH_BIN=PATH  use this binary instead of building target/release/hapwatch
#   PARSE_BENCH=0      skip `cargo bench --bench micro` at the end
#   KEEP=1             keep the temp dir (config, dump.txt) and print its path
set -euo pipefail

N=${1:-2000}
RUNS=${RUNS:-15}
if [ "$RUNS" -lt 10 ]; then
    echo "show.sh: RUNS must be at least 10" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

for tool in haproxy socat python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        echo "show.sh: $tool is required" >&2
        exit 2
    }
done

if [ -n "${HAPWATCH_BIN:-}" ]; then
    bin=$HAPWATCH_BIN
else
    echo "== cargo build --release"
    (cd "$repo" && cargo build --release --quiet)
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/hapwatch
fi

out=$(mktemp -d /tmp/hapwatch-bench.XXXXXX)
pidfile=$out/haproxy.pid
cleanup() {
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        rm -f "$pidfile"
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $out"
    else
        rm -rf "$out"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports: the frontend's, and a closed one for the checked servers.
read -r fe_port down_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')

FE_PORT=$fe_port DOWN_PORT=$down_port "$here/gen-haproxy-cfg.sh" "$N" "$out" >/dev/null
sock=$out/admin.sock
echo "== haproxy $(haproxy -v | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p'), $N backends x 5 servers, config $out/haproxy.cfg"
start_ns=$(date +%s%N)
haproxy -f "$out/haproxy.cfg" -D -p "$pidfile"

ask() { # ask COMMAND: one runtime API exchange on the admin socket
    printf '%s\n' "$1" | socat -t 10 stdio "unix-connect:$sock"
}
for _ in $(seq 200); do
    ask "show info" >/dev/null 2>&1 && break
    sleep 0.05
done
ask "show info" >/dev/null || {
    echo "show.sh: haproxy's socket $sock never answered" >&2
    exit 1
}
echo "socket ready after $((($(date +%s%N) - start_ns) / 1000000)) ms"
# Wait for the first health checks so that the checked servers show DOWN.
if [ "$N" -ge 50 ]; then
    for _ in $(seq 100); do
        ask "show stat" 2>/dev/null | grep -q ',L4CON,' && break
        sleep 0.1
    done
fi

ask "show info;show stat" >"$out/dump.txt"
printf '[[source]]\nname = "big"\nsocket = "%s"\n' "$sock" >"$out/live.toml"
printf '[[source]]\nname = "big"\nfile = "%s"\n' "$out/dump.txt" >"$out/file.toml"

# Dump statistics: size, rows, status mix.
awk '
    /^# pxname,/ { in_stat = 1; stat_start = bytes
                   for (i = 2; i <= NF; i++) if ($i == "status") sc = i
                   ncols = NF - 1 }  # "# pxname" ... trailing empty item
    { bytes += length($0) + 1 }
    in_stat && !/^#/ && NF > 0 { rows++; status[$sc]++ }
    END {
        printf "dump: %d bytes (%.2f MiB) raw reply; show stat part %d bytes (%.2f MB), %d rows x %d columns\n",
            bytes, bytes / 1048576, bytes - stat_start, (bytes - stat_start) / 1e6, rows, ncols
        printf "statuses:"
        for (s in status) printf " %s=%d", s, status[s]
        printf "\n"
    }' FS=, "$out/dump.txt"

# Correctness guard: both paths must return every row.
for cfg in live file; do
    "$bin" -c "$out/$cfg.toml" show --format json | python3 -c '
import json, sys
doc = json.load(sys.stdin)
src = doc["sources"][0]
assert "error" not in src, src
print("%s: hapwatch show --format json -> %d rows" % (sys.argv[1], len(src["rows"])))' "$cfg"
done

declare -a labels=()
declare -A gnu=() precise=()

measure() { # measure LABEL STDIN_TEXT CMD...   (STDIN_TEXT "" = /dev/null)
    local label=$1 input=$2
    shift 2
    local g=$out/gnu.${#labels[@]} p=$out/precise.${#labels[@]}
    labels+=("$label")
    # One warm-up run (page cache, socket path lookups).
    printf '%s' "$input" | "$@" >/dev/null
    : >"$g"
    for _ in $(seq "$RUNS"); do
        if [ -n "$input" ]; then
            printf '%s' "$input" | /usr/bin/time -a -o "$g" -f '%e %U %S %M' "$@" >/dev/null
        else
            /usr/bin/time -a -o "$g" -f '%e %U %S %M' "$@" >/dev/null </dev/null
        fi
    done
    if [ -n "$input" ]; then
        python3 "$here/rusage.py" --stdin "$input" "$RUNS" "$@" >"$p"
    else
        python3 "$here/rusage.py" "$RUNS" "$@" >"$p"
    fi
    gnu[$label]=$g
    precise[$label]=$p
}

# median FILE AWK_EXPR: median over lines of FILE of an expression of its fields.
median() {
    awk "{ print $2 }" "$1" | sort -g | awk '
        { v[NR] = $1 }
        END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
minimum() {
    awk "{ print $2 }" "$1" | sort -g | head -1
}

echo "== timing: $RUNS runs per case per timer"
measure "(a) socat show stat > /dev/null (floor)" $'show stat\n' socat -t 10 stdio "unix-connect:$sock"
measure "(b) show --format json, live socket" "" "$bin" -c "$out/live.toml" show --format json
measure "(c) show --format json, dump file" "" "$bin" -c "$out/file.toml" show --format json
measure "(d) check --connect, dump file" "" "$bin" -c "$out/file.toml" check --connect
measure "(e) hapwatch --version (startup)" "" "$bin" --version

echo
echo "GNU time (/usr/bin/time -f '%e %U %S %M'), medians; it prints 10 ms steps"
printf '%-42s %9s %13s %13s\n' case "wall ms" "user+sys ms" "peak RSS MiB"
for l in "${labels[@]}"; do
    f=${gnu[$l]}
    printf '%-42s %9.0f %13.0f %13.1f\n' "$l" \
        "$(median "$f" '$1 * 1000')" "$(median "$f" '($2 + $3) * 1000')" "$(median "$f" '$4 / 1024')"
done

echo
echo "os.wait4 (benches/rusage.py), medians (min in parentheses); microsecond steps."
echo "Peak RSS is not repeated here: a child forked from python inherits python's RSS high-water"
echo "mark across exec, and GNU time's %M above is exact (KiB) anyway."
printf '%-42s %9s %17s %9s %9s\n' case "wall ms" "user+sys ms" "user ms" "sys ms"
for l in "${labels[@]}"; do
    f=${precise[$l]}
    printf '%-42s %9.2f %8.2f (%6.2f) %9.2f %9.2f\n' "$l" \
        "$(median "$f" '$1')" "$(median "$f" '$2 + $3')" "$(minimum "$f" '$2 + $3')" \
        "$(median "$f" '$2')" "$(median "$f" '$3')"
done
startup=$(median "${precise["(e) hapwatch --version (startup)"]}" '$2 + $3')
for l in "(b) show --format json, live socket" "(c) show --format json, dump file" "(d) check --connect, dump file"; do
    printf '  %s minus startup: %.2f ms CPU\n' "$l" \
        "$(awk -v a="$(median "${precise[$l]}" '$2 + $3')" -v b="$startup" 'BEGIN { print a - b }')"
done
json_bytes=$("$bin" -c "$out/file.toml" show --format json | wc -c)
echo "  JSON output: $json_bytes bytes"

# Stop haproxy before the in-process benchmark so that it competes with nothing.
cleanup_haproxy() {
    if [ -s "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}
cleanup_haproxy

if [ "${PARSE_BENCH:-1}" != 0 ]; then
    echo
    echo "== cargo bench --bench micro (HAPWATCH_BENCH_DUMP=$out/dump.txt)"
    (cd "$repo" && HAPWATCH_BENCH_DUMP=$out/dump.txt cargo bench --quiet --bench micro)
fi
