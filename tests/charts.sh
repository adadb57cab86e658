#!/bin/sh
# The chart step (bench/charts.sh), run by a full make check: it fails
# loudly, naming the line, on a malformed results file; it draws every chart
# from a good one (when gnuplot is there: it is a bench dependency, not a
# test one); and a partial bench run keeps the other benches' rows.
set -u
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "charts: ok: $1"; }
no() { echo "charts: FAILED: $1" >&2; fails=$((fails + 1)); }

good='{"bench":"nop","case":"batch1","metric":"nops_per_s","value":2.4e+06,"unit":"op/s","baseline":"liburing","baseline_value":2.7e+06,"ratio":0.9066}
{"bench":"timer","case":"insert_1M","metric":"ns_per_timer","value":95.5,"unit":"ns"}
{"bench":"echo","case":"epoll_c50","metric":"p50_us","value":210,"unit":"us"}
{"bench":"echo","case":"epoll_c50","metric":"p99_us","value":614.4,"unit":"us"}
{"bench":"echo","case":"halo_c50","metric":"p99_us","value":647.2,"unit":"us","baseline":"epoll","baseline_value":614.4,"ratio":0.9493}
{"bench":"echo","case":"halo_c500","metric":"p99_us","value":9568.3,"unit":"us","baseline":"uring","baseline_value":5177.3,"ratio":0.6100,"paired":true}
{"bench":"http","case":"nginx_c100","metric":"p99_us","value":1530,"unit":"us"}
{"bench":"http","case":"halo_c100","metric":"p99_us","value":1000,"unit":"us","baseline":"nginx","baseline_value":1530,"ratio":1.5300}'

# Malformed files: each must fail with exit 1 and name its bad line.
check_bad() { # what line file-content
	printf '%s\n' "$3" > "$tmp/bad.jsonl"
	sh bench/charts.sh "$tmp/bad.jsonl" "$tmp/out" 2> "$tmp/err" >/dev/null
	rc=$?
	if [ $rc -eq 1 ] && grep -q "bad.jsonl:$2: malformed" "$tmp/err"; then
		ok "$1 fails at line $2"
	else
		no "$1: exit $rc, stderr: $(cat "$tmp/err")"
	fi
}
check_bad "a cut line" 3 "$(printf '%s\n' "$good" | sed -n 1,2p)
{\"bench\":\"nop\",\"case\":\"batch8\",\"metric\":\"nops"
check_bad "text" 1 "Segmentation fault"
check_bad "a value that is not a number" 2 "$(printf '%s\n' "$good" | sed -n 2p)
{\"bench\":\"nop\",\"case\":\"b\",\"metric\":\"m\",\"value\":\"fast\",\"unit\":\"op/s\"}"
check_bad "a baseline without a ratio" 1 \
	'{"bench":"nop","case":"b","metric":"m","value":1,"unit":"op/s","baseline":"x","baseline_value":2}'
check_bad "a missing key" 1 '{"bench":"nop","metric":"m","value":1,"unit":"op/s"}'

# A good file draws every chart.
if command -v gnuplot >/dev/null 2>&1; then
	printf '%s\n' "$good" > "$tmp/good.jsonl"
	if sh bench/charts.sh "$tmp/good.jsonl" "$tmp/out" 2> "$tmp/err" &&
		for c in ratios latency_echo latency_http; do
			grep -q '</svg>' "$tmp/out/$c.svg" || exit 1
		done; then
		ok "a good file draws ratios, latency_echo and latency_http"
	else
		no "a good file: $(cat "$tmp/err")"
	fi
else
	echo "charts: note: no gnuplot (make deps-bench): drawing not tested"
fi

# HALO_BENCH_ONLY replaces only that bench's rows, where they were.
mkdir -p "$tmp/b/bench" "$tmp/b/build/bench"
cp bench/run.sh bench/table.sh bench/charts.sh "$tmp/b/bench/"
printf '%s\n' "$good" > "$tmp/b/bench/results.jsonl"
cat > "$tmp/b/build/bench/bench_timer" <<'EOS'
#!/bin/sh
echo '{"bench":"timer","case":"insert_1M","metric":"ns_per_timer","value":42,"unit":"ns"}' >> "$HALO_BENCH_OUT"
EOS
chmod +x "$tmp/b/build/bench/bench_timer"
(cd "$tmp/b" && HALO_BENCH_ONLY=timer BUILD=build sh bench/run.sh \
	>/dev/null 2>&1)
if [ "$(wc -l < "$tmp/b/bench/results.jsonl")" -eq \
	"$(printf '%s\n' "$good" | wc -l)" ] &&
	sed -n 2p "$tmp/b/bench/results.jsonl" | grep -q '"value":42' &&
	grep -q '"bench":"http","case":"halo_c100"' "$tmp/b/bench/results.jsonl"
then
	ok "a single-bench run replaces only its rows"
else
	no "a single-bench run: $(cat "$tmp/b/bench/results.jsonl")"
fi

[ $fails -eq 0 ] || { echo "charts: $fails failed" >&2; exit 1; }
