#!/bin/sh
# The fault sweep: for each program of tests/fault/, count the allocations a
# clean run makes per kind (runtime/fault.h), then run it once per point with
# that allocation failed (and, with -p, with it and every later one failed),
# and check that each run ends cleanly: exit 0 (all as in a clean run) or 3
# (a clean failure), within the time limit, with no sanitizer report and no
# leaked future. Runs on the sanitizer build with fault injection
# (make faultsweep builds it).
#
# usage: run.sh [-b build] [-k kinds] [-P programs] [-e every] [-o offset]
#               [-j jobs] [-t seconds] [-p] [-d outdir]
#   -b  build directory with tests/fault/p_* (default build/san-fault)
#   -k  kinds to sweep (default "heap slot refill stack")
#   -P  programs to sweep (default: every p_*, e.g. "p_core p_agg")
#   -e  run every e-th point only (default 1: all); -o the first (default 1)
#   -j  runs at a time (default 2)
#   -t  seconds before a run counts as hung (default 20)
#   -p  also run each point persistently (HALO_FAULT_NTH=N+)
#   -d  where the logs of failed runs go (default $build/faultsweep)
set -eu

build=build/san-fault
kinds="heap slot refill stack"
progs=""
every=1
offset=1
jobs=2
limit=20
persist=0
out=""

# One run: prog kind nth; prints "prog kind nth verdict seconds".
if [ "${1:-}" = "--one" ]; then
	bin=$2 kind=$3 nth=$4 out=$5 limit=$6
	name=$(basename "$bin")
	log="$out/$name-$kind-$(echo "$nth" | tr + p).log"
	t0=$(date +%s.%N)
	set +e
	HALO_FAULT_KIND=$kind HALO_FAULT_NTH=$nth \
		timeout -k 5 "$limit" "$bin" >"$log" 2>&1
	rc=$?
	set -e
	t1=$(date +%s.%N)
	verdict=ok
	case $rc in
	0) verdict=ok ;;
	3) verdict=nomem ;;
	1) verdict=WRONG ;;
	4) verdict=LEAK ;;
	5) verdict=SETUP ;;
	124 | 137) verdict=HANG ;;
	*) verdict="EXIT$rc" ;;
	esac
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:|halo: leaked future' "$log"; then
		verdict=SANITIZER
	fi
	case $verdict in
	ok | nomem) rm -f "$log" ;;
	esac
	echo "$name $kind $nth $verdict $(awk "BEGIN { print $t1 - $t0 }")"
	exit 0
fi

while getopts b:k:P:e:o:j:t:pd:h opt; do
	case $opt in
	b) build=$OPTARG ;;
	k) kinds=$OPTARG ;;
	P) progs=$OPTARG ;;
	e) every=$OPTARG ;;
	o) offset=$OPTARG ;;
	j) jobs=$OPTARG ;;
	t) limit=$OPTARG ;;
	p) persist=1 ;;
	d) out=$OPTARG ;;
	*) sed -n '2,23p' "$0"; exit 2 ;;
	esac
done
[ -n "$out" ] || out=$build/faultsweep
dir=$build/tests/fault
[ -n "$progs" ] || progs=$(cd "$dir" && ls p_* | grep -v '\.' || true)
[ -n "$progs" ] || { echo "run.sh: no programs in $dir" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out"/*.log "$out/results" "$out/tasks" "$out/points"

# Sanitizers: every report is fatal and says so in the log; leaks count.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87
export LSAN_OPTIONS=exitcode=88

start=$(date +%s)
for p in $progs; do
	bin=$dir/$p
	counts=$out/$p.counts
	set +e
	HALO_FAULT_COUNTS=$counts timeout -k 5 "$limit" "$bin" \
		>"$out/$p-clean.log" 2>&1
	rc=$?
	set -e
	if [ $rc -ne 0 ]; then
		echo "run.sh: $p fails without a fault (exit $rc):" >&2
		cat "$out/$p-clean.log" >&2
		exit 1
	fi
	rm -f "$out/$p-clean.log"
	for k in $kinds; do
		n=$(sed -n "s/.*\\b$k=\\([0-9]*\\).*/\\1/p" "$counts")
		echo "$p $k $n" >>"$out/points"
		i=$offset
		while [ "$i" -le "$n" ]; do
			echo "$bin $k $i $out $limit"
			[ $persist -eq 0 ] || echo "$bin $k $i+ $out $limit"
			i=$((i + every))
		done >>"$out/tasks"
	done
done

touch "$out/tasks"
xargs -P "$jobs" -L 1 sh "$0" --one <"$out/tasks" >"$out/results"
end=$(date +%s)

status=0
awk -v secs=$((end - start)) -v every="$every" -v persist="$persist" \
	-v dir="$dir" -v out="$out" -v offset="$offset" '
FILENAME ~ /points$/ { pts[$1 " " $2] = $3; order[++np] = $1 " " $2; next }
{
	key = $1 " " $2
	runs[key]++
	v[key, $4]++
	if ($4 != "ok" && $4 != "nomem") {
		bad[key]++
		nbad++
		if (nshow < 30)
			show[++nshow] = $0
	}
	if ($5 > slow) { slow = $5; slowrun = $1 " " $2 " " $3 }
	total++
}
END {
	printf "%-14s %-7s %7s %6s %6s %6s %5s\n", "program", "kind",
		"points", "runs", "ok", "nomem", "bad"
	for (i = 1; i <= np; i++) {
		k = order[i]
		split(k, a, " ")
		printf "%-14s %-7s %7d %6d %6d %6d %5d\n", a[1], a[2], pts[k],
			runs[k], v[k, "ok"], v[k, "nomem"], bad[k]
		tp += pts[k]
	}
	printf "%d points, %d runs (every %d from %d%s), %d bad, %d s; " \
		"slowest run %.2f s (%s)\n", tp, total, every, offset,
		persist ? ", once and persistent" : "", nbad, secs, slow,
		slowrun
	for (i = 1; i <= nshow; i++) {
		split(show[i], b, " ")
		lf = b[3]
		gsub(/\+/, "p", lf)
		printf "BAD: %s %s %s %s: %s/%s-%s-%s.log\n", b[1], b[2], b[3],
			b[4], out, b[1], b[2], lf
		printf "  again: HALO_FAULT_KIND=%s HALO_FAULT_NTH=%s %s/%s\n",
			b[2], b[3], dir, b[1]
	}
	exit nbad ? 1 : 0
}' "$out/points" "$out/results" || status=$?
first=$(ls "$out"/*.log 2>/dev/null | head -n 1)
if [ $status -ne 0 ] && [ -n "$first" ]; then
	echo "--- $first"
	head -n 40 "$first"
fi
exit $status
