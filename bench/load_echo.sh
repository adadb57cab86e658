#!/bin/sh
# Echo servers under aux_loadgen: halo's examples/echo against a plain epoll
# server and a raw liburing one, at 1, 50 and 500 connections of 64-byte
# ping-pong. Rounds interleave the servers (halo, epoll, uring, halo, ...) so
# that a noisy neighbour hurts all of them alike; each server's figure is its
# median-rps round, with that round's p99.
# Rows halo_jN: examples/echo -j N (a group of N loops), against -j 1, its
# threads free to use every CPU (the client's too, on a small machine).
#   env: ECHO_SECS (3) per round, ECHO_ROUNDS (3), ECHO_CONNS ("1 50 500"),
#        ECHO_SIZE (64), ECHO_JOBS ("2"; "" for none), HALO_BUILD,
#        HALO_BENCH_OUT.
set -u
BENCH_NAME=echo
. bench/lib.sh

secs=${ECHO_SECS:-3}
rounds=${ECHO_ROUNDS:-3}
conns_list=${ECHO_CONNS:-1 50 500}
size=${ECHO_SIZE:-64}
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
servers="halo epoll uring"
if [ ! -x "$halo" ]; then
	echo "" >&2
	echo "!!! load_echo: $halo is missing: the halo rows are SKIPPED" >&2
	echo "" >&2
	servers="epoll uring"
	jobs=
fi
for j in $jobs; do servers="$servers halo_j$j"; done
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
	epoll) echo "$HALO_BUILD/bench/aux_epoll_echo" ;;
	uring) echo "$HALO_BUILD/bench/aux_uring_echo" ;;
	esac
}

# One round of server $1 at $2 connections: appends "rps p99 eff p50 p999"
# to $tmp/$1_$2, or marks the pair failed.
run_round() {
	try=0
	until next_port && case $1 in
		halo_j*) start_server $all_cpus "$halo" "$port" -j "${1#halo_j}" ;;
		*) start_server "$(server_cmd "$1")" "$port" ;;
		esac; do
		try=$((try + 1))
		if [ $try -ge 3 ]; then
			touch "$tmp/$1_$2.failed"
			return 1
		fi
	done
	before=$(cpu_ticks "$server_pid")
	out=$($ON_CLIENT_CPU "$loadgen" -p "$port" -c "$2" -d "$secs" \
		-s "$size" 2>"$tmp/loadgen.err")
	rc=$?
	after=$(cpu_ticks "$server_pid")
	stop_server
	progress "$1 c$2: $out"
	if [ $rc -ne 0 ]; then
		echo "!!! load_echo: loadgen against $1 at $2 conns failed:" >&2
		cat "$tmp/loadgen.err" >&2
		touch "$tmp/$1_$2.failed"
		return 1
	fi
	# rps, p99, requests per second of server CPU (the client, not the
	# server, is what saturates first on two cores), p50 and p99.9.
	echo "$out" | sed -n 's/.*reqs=\([0-9]*\) .* rps=\([0-9.]*\) p50_us=\([0-9.]*\) p99_us=\([0-9.]*\) p999_us=\([0-9.]*\) .*/\2 \4 \1 \3 \5/p' |
		awk -v t="$tck" -v d=$((after - before)) \
			'{ print $1, $2, (d > 0 ? $3 * t / d : 0), $4, $5 }' >>"$tmp/$1_$2"
}

# Median round of server $1 at $2 conns: sets rps, p99, eff, p50 and
# p999, or returns 1.
median_of() {
	rps=
	p99=
	[ -f "$tmp/$1_$2.failed" ] && return 1
	[ -s "$tmp/$1_$2" ] || return 1
	set -- $(median_line "$tmp/$1_$2")
	rps=$1
	p99=$2
	eff=$3
	p50=$4
	p999=$5
}

for c in $conns_list; do
	r=1
	while [ $r -le "$rounds" ]; do
		for s in $servers; do
			progress "round $r/$rounds: $s, $c connections, ${secs}s"
			run_round "$s" "$c" || fail=1
		done
		r=$((r + 1))
	done

	for base in epoll uring; do
		if median_of $base "$c"; then
			emit echo "${base}_c$c" rps "$rps" req/s
			emit echo "${base}_c$c" p50_us "$p50" us
			emit echo "${base}_c$c" p99_us "$p99" us
			emit echo "${base}_c$c" p999_us "$p999" us
			emit echo "${base}_c$c" req_per_cpu_s "$eff" req/cpu-s
		fi
	done
	case " $servers " in *" halo "*) ;; *) continue ;; esac
	for j in $jobs; do
		median_of "halo_j$j" "$c" || continue
		j_rps=$rps j_p99=$p99 j_eff=$eff
		median_of halo "$c" || continue
		emit echo "halo_j${j}_c$c" rps "$j_rps" req/s halo_j1 "$rps" 1
		emit echo "halo_j${j}_c$c" p99_us "$j_p99" us halo_j1 "$p99" 0
		emit echo "halo_j${j}_c$c" req_per_cpu_s "$j_eff" req/cpu-s \
			halo_j1 "$eff" 1
	done
	median_of halo "$c" || continue
	halo_rps=$rps
	halo_p99=$p99
	halo_eff=$eff
	halo_p50=$p50
	halo_p999=$p999
	for base in epoll uring; do
		median_of $base "$c" || continue
		emit echo "halo_c$c" rps "$halo_rps" req/s $base "$rps" 1
		emit echo "halo_c$c" p50_us "$halo_p50" us $base "$p50" 0
		emit echo "halo_c$c" p99_us "$halo_p99" us $base "$p99" 0
		emit echo "halo_c$c" p999_us "$halo_p999" us $base "$p999" 0
		emit echo "halo_c$c" req_per_cpu_s "$halo_eff" req/cpu-s $base \
			"$eff" 1
	done
done
[ -n "$jobs" ] && emit echo machine cpus "$(nproc)" cpus
exit $fail
