#!/bin/sh
# Echo servers under aux_loadgen: halo's examples/echo against a plain epoll
# server and a raw liburing one, at 1, 50 and 500 connections of 64-byte
# ping-pong; then streaming: 50 connections with 4 messages of 16 and 64 KiB
# in flight each, against the raw liburing server (4 KiB buffers, one CQE
# per buffer, no bundles) and against halo with its receive bundles switched
# off (HALO_FEATURES_OFF=recv_bundle: the feature's gain, on over off).
# Rounds interleave the servers (halo, epoll, uring, halo, ...) so that a
# noisy neighbour hurts all of them alike; each server's figure is its
# median-rps round, with that round's p99 and requests per server-CPU-second
# (the server's utime + stime from /proc/PID/stat over the round); the
# spread of the rounds is printed as a range. A ratio is the median over the
# rounds of halo's figure over the baseline's in the same round (rows marked
# "paired"): this VM's speed shifts by up to 1.6x from one round to the
# next, which moves both servers of a round alike.
# Rows halo_jN: examples/echo -j N (a group of N loops), against -j 1, its
# threads free to use every CPU (the client's too, on a small machine).
#   env: ECHO_SECS (3) per round, ECHO_ROUNDS (5), ECHO_CONNS ("1 50 500"),
#        ECHO_SIZE (64), ECHO_STREAM ("16384 65536"; "" for none),
#        ECHO_STREAM_CONNS (50), ECHO_INFLIGHT (4), ECHO_JOBS ("2"; "" for
#        none), ECHO_SERVERS ("halo epoll uring": a subset to iterate on),
#        HALO_BUILD,
#        HALO_BENCH_OUT.
set -u
BENCH_NAME=echo
. bench/lib.sh

secs=${ECHO_SECS:-3}
rounds=${ECHO_ROUNDS:-5}
conns_list=${ECHO_CONNS:-1 50 500}
size=${ECHO_SIZE:-64}
stream_sizes=${ECHO_STREAM-16384 65536}
stream_conns=${ECHO_STREAM_CONNS:-50}
inflight=${ECHO_INFLIGHT:-4}
jobs=${ECHO_JOBS-2}
loadgen=$HALO_BUILD/bench/aux_loadgen
halo=$HALO_BUILD/examples/echo

for b in "$loadgen" "$HALO_BUILD/bench/aux_epoll_echo" \
	"$HALO_BUILD/bench/aux_uring_echo"; do
	if [ ! -x "$b" ]; then
		echo "load_echo: $b is missing: run make benchbin first" >&2
		exit 1
	fi
done
servers=${ECHO_SERVERS:-halo epoll uring}
if [ ! -x "$halo" ]; then
	echo "" >&2
	echo "!!! load_echo: $halo is missing: the halo rows are SKIPPED" >&2
	echo "" >&2
	servers=$(echo " $servers " | sed 's/ halo / /')
	jobs=
fi
ping_servers=$servers
for j in $jobs; do ping_servers="$ping_servers halo_j$j"; done
# -j N: every CPU this script may use (ON_SERVER_CPU pins to one).
all_cpus=
[ -n "$ON_SERVER_CPU" ] && all_cpus="taskset -c 0-$(($(nproc) - 1))"

bench_setup
tck=$(getconf CLK_TCK)
ulimit -n 4096 2>/dev/null || true
fail=0

server_cmd() {
	case $1 in
	halo) echo "$halo" ;;
	halo_nobundle) echo "env HALO_FEATURES_OFF=recv_bundle $halo" ;;
	epoll) echo "$HALO_BUILD/bench/aux_epoll_echo" ;;
	uring) echo "$HALO_BUILD/bench/aux_uring_echo" ;;
	esac
}

# One round of server $1 at $2 connections with messages of $3 bytes, $4 in
# flight per connection: appends "rps p99 req/cpu-s p50 p999" to
# $tmp/$1_c$2 (or $tmp/$1_s$3 when streaming), or marks the pair failed.
run_round() {
	key=$1_c$2
	[ "$4" -gt 1 ] && key=$1_s$3
	try=0
	until next_port && case $1 in
		halo_j*) start_server $all_cpus "$halo" "$port" -j "${1#halo_j}" ;;
		*) start_server $(server_cmd "$1") "$port" ;;
		esac; do
		try=$((try + 1))
		if [ $try -ge 3 ]; then
			touch "$tmp/$key.failed"
			return 1
		fi
	done
	before=$(cpu_ticks "$server_pid")
	out=$($ON_CLIENT_CPU "$loadgen" -p "$port" -c "$2" -d "$secs" \
		-s "$3" -n "$4" 2>"$tmp/loadgen.err")
	rc=$?
	after=$(cpu_ticks "$server_pid")
	stop_server
	progress "$key: $out cpu_ticks=$((after - before))"
	if [ $rc -ne 0 ]; then
		echo "!!! load_echo: loadgen against $key failed:" >&2
		cat "$tmp/loadgen.err" >&2
		touch "$tmp/$key.failed"
		return 1
	fi
	# rps, p99, requests per second of server CPU (the client, not the
	# server, is what saturates first on two cores), p50 and p99.9.
	line=$(echo "$out" | sed -n 's/.*reqs=\([0-9]*\) .* rps=\([0-9.]*\) p50_us=\([0-9.]*\) p99_us=\([0-9.]*\) p999_us=\([0-9.]*\) .*/\2 \4 \1 \3 \5/p' |
		awk -v t="$tck" -v d=$((after - before)) \
			'{ print $1, $2, (d > 0 ? $3 * t / d : 0), $4, $5 }')
	# One line per round, or the round counts as failed: the paired
	# ratios match rounds by their line numbers.
	if [ -z "$line" ]; then
		echo "!!! load_echo: unreadable loadgen output for $key: $out" >&2
		touch "$tmp/$key.failed"
		return 1
	fi
	echo "$line" >>"$tmp/$key"
}

# The range of field $2 over the rounds in file $1: "min..max".
range_of() {
	awk -v f="$2" 'NR == 1 || $f < lo { lo = $f } NR == 1 || $f > hi { hi = $f }
		END { printf "%.0f..%.0f", lo, hi }' "$1"
}

# Median round of server $1 at key $2 (c50, s16384): sets rps, p99, p50,
# p999 and eff (req/cpu-s, the median over the rounds of its own), or
# returns 1.
median_of() {
	rps=
	p99=
	[ -f "$tmp/$1_$2.failed" ] && return 1
	[ -s "$tmp/$1_$2" ] || return 1
	eff=$(awk '{ print $3 }' "$tmp/$1_$2" >"$tmp/eff"; median_line "$tmp/eff")
	progress "$1 $2: rps $(range_of "$tmp/$1_$2" 1), req/cpu-s $(range_of "$tmp/$1_$2" 3)"
	set -- $(median_line "$tmp/$1_$2")
	rps=$1
	p99=$2
	p50=$4
	p999=$5
}

for c in $conns_list; do
	r=1
	while [ $r -le "$rounds" ]; do
		for s in $ping_servers; do
			progress "round $r/$rounds: $s, $c connections, ${secs}s"
			run_round "$s" "$c" "$size" 1 || fail=1
		done
		r=$((r + 1))
	done

	for base in epoll uring; do
		if median_of $base "c$c"; then
			emit echo "${base}_c$c" rps "$rps" req/s
			emit echo "${base}_c$c" p50_us "$p50" us
			emit echo "${base}_c$c" p99_us "$p99" us
			emit echo "${base}_c$c" p999_us "$p999" us
			emit echo "${base}_c$c" req_per_cpu_s "$eff" req/cpu-s
		fi
	done
	case " $servers " in *" halo "*) ;; *) continue ;; esac
	for j in $jobs; do
		median_of "halo_j$j" "c$c" || continue
		j_rps=$rps j_p99=$p99 j_eff=$eff
		median_of halo "c$c" || continue
		a=$tmp/halo_j${j}_c$c b=$tmp/halo_c$c
		emit echo "halo_j${j}_c$c" rps "$j_rps" req/s halo_j1 "$rps" 1 \
			"$(paired_ratio "$a" "$b" 1 1)"
		emit echo "halo_j${j}_c$c" p99_us "$j_p99" us halo_j1 "$p99" 0 \
			"$(paired_ratio "$a" "$b" 2 0)"
		emit echo "halo_j${j}_c$c" req_per_cpu_s "$j_eff" req/cpu-s \
			halo_j1 "$eff" 1 "$(paired_ratio "$a" "$b" 3 1)"
	done
	median_of halo "c$c" || continue
	halo_rps=$rps
	halo_p99=$p99
	halo_eff=$eff
	halo_p50=$p50
	halo_p999=$p999
	for base in epoll uring; do
		median_of $base "c$c" || continue
		a=$tmp/halo_c$c b=$tmp/${base}_c$c
		emit echo "halo_c$c" rps "$halo_rps" req/s $base "$rps" 1 \
			"$(paired_ratio "$a" "$b" 1 1)"
		emit echo "halo_c$c" p50_us "$halo_p50" us $base "$p50" 0 \
			"$(paired_ratio "$a" "$b" 4 0)"
		emit echo "halo_c$c" p99_us "$halo_p99" us $base "$p99" 0 \
			"$(paired_ratio "$a" "$b" 2 0)"
		emit echo "halo_c$c" p999_us "$halo_p999" us $base "$p999" 0 \
			"$(paired_ratio "$a" "$b" 5 0)"
		emit echo "halo_c$c" req_per_cpu_s "$halo_eff" req/cpu-s $base \
			"$eff" 1 "$(paired_ratio "$a" "$b" 3 1)"
	done
done
stream_servers=
for s in $servers; do
	case $s in
	halo) stream_servers="$stream_servers halo halo_nobundle" ;;
	uring) stream_servers="$stream_servers uring" ;;
	esac
done
for sz in $stream_sizes; do
	r=1
	while [ $r -le "$rounds" ]; do
		for s in $stream_servers; do
			progress "round $r/$rounds: $s, $stream_conns x $inflight x $sz bytes, ${secs}s"
			run_round "$s" "$stream_conns" "$sz" "$inflight" || fail=1
		done
		r=$((r + 1))
	done
	for s in uring halo_nobundle; do
		median_of $s "s$sz" || continue
		emit echo "${s}_stream$sz" rps "$rps" req/s
		emit echo "${s}_stream$sz" req_per_cpu_s "$eff" req/cpu-s
	done
	median_of halo "s$sz" || continue
	halo_rps=$rps
	halo_p99=$p99
	halo_eff=$eff
	for base in uring halo_nobundle; do
		median_of $base "s$sz" || continue
		name=halo_stream$sz
		[ $base = halo_nobundle ] && name=recv_bundle_on_over_off_stream$sz
		a=$tmp/halo_s$sz b=$tmp/${base}_s$sz
		emit echo "$name" rps "$halo_rps" req/s $base "$rps" 1 \
			"$(paired_ratio "$a" "$b" 1 1)"
		emit echo "$name" p99_us "$halo_p99" us $base "$p99" 0 \
			"$(paired_ratio "$a" "$b" 2 0)"
		emit echo "$name" req_per_cpu_s "$halo_eff" req/cpu-s $base \
			"$eff" 1 "$(paired_ratio "$a" "$b" 3 1)"
	done
done
[ -n "$jobs" ] && emit echo machine cpus "$(nproc)" cpus
exit $fail
