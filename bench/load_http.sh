#!/bin/sh
# halo's examples/http against nginx (one worker, no master, no access log,
# `return 200 "hello, world!\n"`) under wrk -t1 -c100 with keep-alive.
# Figures per server: requests/s, p99 latency, and requests per second of
# server CPU time (utime + stime from /proc/PID/stat), which says how much of
# a core each request costs whatever the client managed to drive. halo runs
# twice: as shipped (receive bundles off) and with -B (bundles on), for the
# feature's own row (on over off). Rounds interleave the servers; each figure
# comes from the median-rps round.
# Rows halo_jN: examples/http -j N (a group of N loops), against -j 1, its
# threads free to use every CPU (wrk's too, on a small machine).
#   env: HTTP_SECS (5) per round, HTTP_ROUNDS (3), HTTP_CONNS (100),
#        HTTP_JOBS ("2"; "" for none), HALO_BUILD, HALO_BENCH_OUT.
set -u
BENCH_NAME=http
. bench/lib.sh

secs=${HTTP_SECS:-5}
rounds=${HTTP_ROUNDS:-3}
conns=${HTTP_CONNS:-100}
jobs=${HTTP_JOBS-2}
halo=$HALO_BUILD/examples/http
tck=$(getconf CLK_TCK)
fail=0

if ! command -v wrk >/dev/null 2>&1; then
	echo "load_http: wrk is missing: run make deps-bench" >&2
	exit 1
fi
servers=
if [ -x "$halo" ]; then
	servers="halo halo_bundle"
	for j in $jobs; do servers="$servers halo_j$j"; done
else
	jobs=
	echo "" >&2
	echo "!!! load_http: $halo is missing: the halo rows are SKIPPED" >&2
	echo "" >&2
fi
if command -v nginx >/dev/null 2>&1; then
	servers="$servers nginx"
else
	echo "!!! load_http: nginx is missing (make deps-bench): no baseline" >&2
	fail=1
fi
[ -n "$servers" ] || exit 1

bench_setup
ulimit -n 4096 2>/dev/null || true

# Everything nginx writes goes under $tmp, so that it runs as root without
# touching /etc, /var or /run.
nginx_conf() {
	cat <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	default_type text/plain;
	keepalive_requests 100000000;
	keepalive_timeout 60s;
	client_body_temp_path $tmp/nginx-body;
	proxy_temp_path $tmp/nginx-proxy;
	fastcgi_temp_path $tmp/nginx-fastcgi;
	uwsgi_temp_path $tmp/nginx-uwsgi;
	scgi_temp_path $tmp/nginx-scgi;
	server {
		listen 127.0.0.1:$port;
		location / { return 200 "hello, world!\n"; }
	}
}
EOF
}

# wrk's latency figure ("850.00us", "1.23ms", "2.00s") in us.
to_us() {
	echo "$1" | awk '{
		v = $1 + 0
		if ($1 ~ /us$/) print v
		else if ($1 ~ /ms$/) print v * 1000
		else if ($1 ~ /m$/) print v * 60000000
		else if ($1 ~ /s$/) print v * 1000000
		else print v
	}'
}

start_one() {
	case $1 in
	halo)
		start_server "$halo" "$port" ;;
	halo_j*) # every CPU this script may use (ON_SERVER_CPU pins to one)
		start_server ${ON_SERVER_CPU:+taskset -c 0-$(($(nproc) - 1))} \
			"$halo" "$port" -j "${1#halo_j}" ;;
	halo_bundle)
		start_server "$halo" "$port" -B ;;
	nginx)
		nginx_conf > "$tmp/nginx.conf"
		start_server nginx -p "$tmp" -e "$tmp/nginx-error.log" \
			-c "$tmp/nginx.conf" ;;
	esac
}

# One round of server $1: appends "rps p99_us req_per_cpu_s p50_us p90_us"
# to $tmp/$1 (wrk --latency reports 50, 75, 90 and 99%).
run_round() {
	try=0
	until next_port && start_one "$1"; do
		try=$((try + 1))
		if [ $try -ge 3 ]; then
			touch "$tmp/$1.failed"
			return 1
		fi
	done

	before=$(cpu_ticks "$server_pid")
	$ON_CLIENT_CPU wrk -t1 -c"$conns" -d"${secs}s" --latency \
		"http://127.0.0.1:$port/" >"$tmp/wrk.out" 2>&1
	rc=$?
	after=$(cpu_ticks "$server_pid")
	stop_server

	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")
	reqs=$(awk '/requests in/ { print $1 }' "$tmp/wrk.out")
	p99=$(awk '$1 == "99%" { print $2 }' "$tmp/wrk.out")
	p50=$(awk '$1 == "50%" { print $2 }' "$tmp/wrk.out")
	p90=$(awk '$1 == "90%" { print $2 }' "$tmp/wrk.out")
	bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$tmp/wrk.out")
	errs=$(awk '/Socket errors:/ { sub(/.*errors: /, ""); print }' \
		"$tmp/wrk.out")
	progress "$1: rps=${rps:-?} p99=${p99:-?} requests=${reqs:-?} cpu_ticks=$before..$after${errs:+ socket errors: $errs}"
	if [ $rc -ne 0 ] || [ -z "$rps" ] || [ -z "$p99" ] || [ -n "$bad" ] ||
		[ -z "$before" ] || [ -z "$after" ]; then
		echo "!!! load_http: wrk against $1 failed (rc $rc${bad:+, $bad non-2xx responses}):" >&2
		cat "$tmp/wrk.out" >&2
		touch "$tmp/$1.failed"
		return 1
	fi
	awk -v rps="$rps" -v p99="$(to_us "$p99")" -v reqs="$reqs" \
		-v p50="$(to_us "${p50:-0}")" -v p90="$(to_us "${p90:-0}")" \
		-v ticks=$((after - before)) -v tck="$tck" 'BEGIN {
		printf "%s %s %.1f %s %s\n", rps, p99,
			(ticks > 0 ? reqs * tck / ticks : 0), p50, p90
	}' >>"$tmp/$1"
}

# Median round of server $1: sets rps, p99, eff, p50, p90, or returns 1.
median_of() {
	[ -f "$tmp/$1.failed" ] && return 1
	[ -s "$tmp/$1" ] || return 1
	set -- $(median_line "$tmp/$1")
	rps=$1
	p99=$2
	eff=$3
	p50=$4
	p90=$5
}

r=1
while [ $r -le "$rounds" ]; do
	for s in $servers; do
		progress "round $r/$rounds: $s, wrk -t1 -c$conns ${secs}s"
		run_round "$s" || fail=1
	done
	r=$((r + 1))
done

case=c$conns
if median_of nginx; then
	emit http "nginx_$case" rps "$rps" req/s
	emit http "nginx_$case" p50_us "$p50" us
	emit http "nginx_$case" p90_us "$p90" us
	emit http "nginx_$case" p99_us "$p99" us
	emit http "nginx_$case" req_per_cpu_s "$eff" req/cpu-s
	n_rps=$rps n_p99=$p99 n_eff=$eff n_p50=$p50 n_p90=$p90
else
	n_rps=0 n_p99=0 n_eff=0 n_p50=0 n_p90=0
fi
if median_of halo; then
	emit http "halo_$case" rps "$rps" req/s nginx "$n_rps" 1
	emit http "halo_$case" p50_us "$p50" us nginx "$n_p50" 0
	emit http "halo_$case" p90_us "$p90" us nginx "$n_p90" 0
	emit http "halo_$case" p99_us "$p99" us nginx "$n_p99" 0
	emit http "halo_$case" req_per_cpu_s "$eff" req/cpu-s nginx "$n_eff" 1
	h_rps=$rps h_p99=$p99 h_eff=$eff
	for j in $jobs; do
		median_of "halo_j$j" || continue
		emit http "halo_j${j}_$case" rps "$rps" req/s halo_j1 "$h_rps" 1
		emit http "halo_j${j}_$case" p99_us "$p99" us halo_j1 "$h_p99" 0
		emit http "halo_j${j}_$case" req_per_cpu_s "$eff" req/cpu-s \
			halo_j1 "$h_eff" 1
	done
	[ -n "$jobs" ] && emit http machine cpus "$(nproc)" cpus
	if median_of halo_bundle; then
		emit http "halo_bundle_$case" rps "$rps" req/s nginx "$n_rps" 1
		emit http "halo_bundle_$case" req_per_cpu_s "$eff" req/cpu-s \
			nginx "$n_eff" 1
		emit http "recv_bundle_on_over_off_$case" rps "$rps" req/s \
			halo "$h_rps" 1
		emit http "recv_bundle_on_over_off_$case" req_per_cpu_s "$eff" \
			req/cpu-s halo "$h_eff" 1
	fi
fi
exit $fail
