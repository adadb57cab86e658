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
sh bench/table.sh "$OUT"
echo
echo "results: $OUT ($(uname -r), $(nproc) cores)"
exit $fail
