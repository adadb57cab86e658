#!/bin/sh
# make bench: run every benchmark, then print the table of bench/results.jsonl.
# Each bench/bench_*.c is a program; bench/*.sh scripts (load tests against
# nginx, fio, ...) run after them. HALO_BENCH_ONLY=name runs one.
set -u
BUILD=${BUILD:-build/rel}
OUT=bench/results.jsonl
: > "$OUT.tmp"
export HALO_BENCH_OUT="$OUT.tmp" HALO_BUILD="$BUILD"
fail=0
for b in "$BUILD"/bench/bench_*; do
	[ -x "$b" ] || continue
	name=${b##*/bench_}
	[ -n "${HALO_BENCH_ONLY:-}" ] && [ "$HALO_BENCH_ONLY" != "$name" ] && continue
	echo "== $name" >&2
	"$b" || { echo "bench $name failed" >&2; fail=1; }
done
for s in bench/load_*.sh; do
	[ -f "$s" ] || continue
	name=${s##*/load_}; name=${name%.sh}
	[ -n "${HALO_BENCH_ONLY:-}" ] && [ "$HALO_BENCH_ONLY" != "$name" ] && continue
	echo "== $name" >&2
	sh "$s" || { echo "bench $name failed" >&2; fail=1; }
done
mv "$OUT.tmp" "$OUT"
echo
printf '%-10s %-30s %-20s %14s %-8s %14s %8s\n' bench case metric value unit baseline ratio
awk '
function field(k,   m) {
	if (match($0, "\"" k "\":\"[^\"]*\"")) { m = substr($0, RSTART, RLENGTH); sub("^\"" k "\":\"", "", m); sub("\"$", "", m); return m }
	if (match($0, "\"" k "\":[-0-9.eE+]+")) { m = substr($0, RSTART, RLENGTH); sub("^\"" k "\":", "", m); return m }
	return ""
}
{ printf "%-10s %-30s %-20s %14s %-8s %14s %8s\n", field("bench"), field("case"), field("metric"), field("value"), field("unit"), field("baseline_value"), field("ratio") }
' "$OUT"
echo
echo "results: $OUT ($(uname -r), $(nproc) cores)"
exit $fail
