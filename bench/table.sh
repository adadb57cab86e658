#!/bin/sh
# Print bench/results.jsonl (or $1) as a table; with -m, as a Markdown table.
# The JSON lines are the flat objects bench/bench.h writes.
md=0
[ "${1:-}" = -m ] && { md=1; shift; }
awk -v md=$md '
function field(k,   m) {
	if (match($0, "\"" k "\":\"[^\"]*\"")) {
		m = substr($0, RSTART, RLENGTH)
		sub("^\"" k "\":\"", "", m); sub("\"$", "", m); return m
	}
	if (match($0, "\"" k "\":[-0-9.eE+]+")) {
		m = substr($0, RSTART, RLENGTH)
		sub("^\"" k "\":", "", m); return m
	}
	return ""
}
function num(v) { return v == "" ? "" : sprintf("%.4g", v) }
BEGIN {
	if (md) {
		print "| bench | case | metric | halo | unit | baseline | baseline value | ratio |"
		print "|---|---|---|---|---|---|---|---|"
	} else
		printf "%-9s %-27s %-22s %11s %-10s %-21s %9s\n", "bench", "case", \
			"metric", "value", "unit", "baseline", "ratio"
}
{
	b = field("baseline"); bv = num(field("baseline_value")); r = field("ratio")
	if (md)
		printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", field("bench"), \
			field("case"), field("metric"), num(field("value")), field("unit"), \
			b, bv, r == "" ? "" : sprintf("%.2f", r)
	else
		printf "%-9s %-27s %-22s %11s %-10s %-21s %9s\n", field("bench"), \
			field("case"), field("metric"), num(field("value")), field("unit"), \
			b == "" ? "" : b " " bv, r == "" ? "" : sprintf("%.2f", r)
}' "${1:-bench/results.jsonl}"
