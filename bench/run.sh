#!/bin/sh
# make bench: run every benchmark, then print the table of bench/results.jsonl
# and draw its charts (bench/charts.sh, into bench/charts/).
# Each bench/bench_*.c is a program; bench/*.sh scripts (load tests against
# nginx, fio, ...) run after them. HALO_BENCH_ONLY=name runs one, and then
# only that bench's rows of bench/results.jsonl are replaced: the rows of the
# others, from the last full run, stay.
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

# A partial run: the benches that wrote rows replace their old rows, in
# place; every other row of the old file stays.
if [ -n "${HALO_BENCH_ONLY:-}" ] && [ -s "$OUT" ]; then
	awk '
	function bench(   m) {
		if (!match($0, /"bench":"[^"]*"/))
			return ""
		m = substr($0, RSTART + 9, RLENGTH - 10)
		return m
	}
	FNR == NR { b = bench(); new[b] = new[b] $0 "\n"; order[++n] = b; next }
	{
		b = bench()
		if (!(b in new)) { print; next }
		if (!(b in done)) { printf "%s", new[b]; done[b] = 1 }
	}
	END {
		for (i = 1; i <= n; i++)
			if (!(order[i] in done)) {
				printf "%s", new[order[i]]
				done[order[i]] = 1
			}
	}' "$OUT.tmp" "$OUT" > "$OUT.merged" && mv "$OUT.merged" "$OUT"
	rm -f "$OUT.tmp"
else
	mv "$OUT.tmp" "$OUT"
fi
echo
sh bench/table.sh "$OUT"
echo
echo "results: $OUT ($(uname -r), $(nproc) cores)"
sh bench/charts.sh "$OUT" bench/charts || fail=1
exit $fail
