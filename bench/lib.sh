# Shared by the bench/load_*.sh scripts (sourced, POSIX sh): servers on
# 127.0.0.1, pinned to cpu 0 with clients on cpu 1, results as JSON lines in
# $HALO_BENCH_OUT in the shape bench/bench.h describes.

HALO_BUILD=${HALO_BUILD:-build/rel}
HALO_BENCH_OUT=${HALO_BENCH_OUT:-bench/results.jsonl}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -gt "$CLIENT_CPU" ]; then
	ON_SERVER_CPU="taskset -c $SERVER_CPU"
	ON_CLIENT_CPU="taskset -c $CLIENT_CPU"
else
	echo "note: no taskset or too few cpus: servers and clients run unpinned" >&2
	ON_SERVER_CPU=
	ON_CLIENT_CPU=
fi

# Ports come from a range below the kernel's ephemeral ports (which clients,
# ours and anyone else's, take from), starting at a point picked per script
# run, so that a socket still held by a server that just exited (an io_uring
# tears down asynchronously) never meets the next server.
eph_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$eph_low" -gt 12000 ] 2>/dev/null || eph_low=32768
port_low=10000
port_high=$((eph_low - 1))
bench_port=$((port_low + $$ % (port_high - port_low)))
server_pid=

progress() { echo "[$BENCH_NAME] $*" >&2; }

# Does any TCP socket use local port $1 (any state, v4 or v6)?
port_used() {
	hex=$(printf '%04X' "$1")
	grep -qE "^ *[0-9]+: [0-9A-F]+:$hex " /proc/net/tcp /proc/net/tcp6 \
		2>/dev/null
}

# Is anything listening on TCP port $1?
port_listening() {
	hex=$(printf '%04X' "$1")
	grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A " \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# The next port that no socket uses, in $port.
next_port() {
	i=0
	while [ $i -lt 100 ]; do
		bench_port=$((bench_port + 1))
		[ $bench_port -gt $port_high ] && bench_port=$port_low
		if ! port_used $bench_port; then
			port=$bench_port
			return 0
		fi
		i=$((i + 1))
	done
	echo "no free port" >&2
	return 1
}

# Start "$@" on the server cpu in the background as $server_pid and wait up
# to 5 s for it to listen on $port. Returns 1 if it died or never listened.
start_server() {
	$ON_SERVER_CPU "$@" >/dev/null 2>"$tmp/server.err" &
	server_pid=$!
	i=0
	while [ $i -lt 100 ]; do
		port_listening "$port" && return 0
		if ! kill -0 "$server_pid" 2>/dev/null; then
			echo "server $1 exited before listening:" >&2
			cat "$tmp/server.err" >&2
			server_pid=
			return 1
		fi
		sleep 0.05
		i=$((i + 1))
	done
	echo "server $1 does not listen on $port after 5 s" >&2
	stop_server
	return 1
}

# SIGTERM, then SIGKILL if it has not exited within 2 s.
stop_server() {
	[ -n "$server_pid" ] || return 0
	kill -TERM "$server_pid" 2>/dev/null
	i=0
	while kill -0 "$server_pid" 2>/dev/null && [ $i -lt 40 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -KILL "$server_pid" 2>/dev/null
	wait "$server_pid" 2>/dev/null
	server_pid=
}

# Temp dir and a trap that always takes the server down with the script.
bench_setup() {
	tmp=$(mktemp -d)
	trap 'stop_server; rm -rf "$tmp"' EXIT
	trap 'exit 130' INT TERM
	mkdir -p "$(dirname "$HALO_BENCH_OUT")"
}

# emit BENCH CASE METRIC VALUE UNIT [BASELINE BASELINE_VALUE HIGHER_IS_BETTER
#      [PAIRED_RATIO]]
# The ratio is VALUE over BASELINE_VALUE (inverted when lower is better),
# unless PAIRED_RATIO is given: the median of the ratios of rounds run side
# by side (see paired_ratio), which the row then marks "paired":true.
emit() {
	awk -v b="$1" -v c="$2" -v m="$3" -v v="$4" -v u="$5" -v bl="${6:-}" \
		-v bv="${7:-0}" -v hib="${8:-1}" -v pr="${9:-}" \
		-v out="$HALO_BENCH_OUT" 'BEGIN {
		line = sprintf("{\"bench\":\"%s\",\"case\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,\"unit\":\"%s\"", b, c, m, v, u)
		show = sprintf("  [%s] %-28s %-18s %12.4g %s", b, c, m, v, u)
		if (bl != "" && bv > 0 && v > 0) {
			r = pr != "" ? pr + 0 : (hib ? v / bv : bv / v)
			line = line sprintf(",\"baseline\":\"%s\",\"baseline_value\":%.6g,\"ratio\":%.4f", bl, bv, r)
			if (pr != "")
				line = line ",\"paired\":true"
			show = show sprintf("   vs %s %.4g  ratio %.2f%s", bl, bv, r, pr != "" ? " (paired)" : "")
		}
		print line "}" >> out
		print show > "/dev/stderr"
	}'
}

# The median line of file $1 by its first field (the lower middle for an even
# count): "value rest...".
# utime + stime of process $1, in clock ticks.
cpu_ticks() {
	sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}

# paired_ratio FILE_A FILE_B FIELD HIGHER_IS_BETTER: rounds of two servers
# run side by side, one line per round in the same order in each file; the
# median over the rounds of A's field over B's (B's over A's when lower is
# better). A machine whose speed drifts between rounds moves both sides of
# a pair alike, so this is steadier than the ratio of the two medians.
# Prints nothing when the files hold different numbers of rounds.
paired_ratio() {
	paste -d ' ' "$1" "$2" | awk -v f="$3" -v hib="$4" '
		{ n = NF / 2; a = $f; b = $(f + n)
		  if (NF % 2 || a <= 0 || b <= 0) { bad = 1; exit }
		  print (hib ? a / b : b / a) }
		END { if (bad) exit 1 }' >"$tmp/paired" || return 0
	[ "$(wc -l <"$1")" -eq "$(wc -l <"$2")" ] || return 0
	median_line "$tmp/paired"
}

median_line() {
	sort -g "$1" | awk '{ l[NR] = $0 } END { if (NR) print l[int((NR + 1) / 2)] }'
}
