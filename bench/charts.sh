#!/bin/sh
# Draw SVG charts from a results file alone (make charts; make bench runs it
# at its end), so that an older results file can be drawn again:
#   ratios.svg        every case that ran against a baseline: halo / baseline,
#                     oriented so that > 1 is better for halo, 1.0 marked
#   latency_echo.svg  latency percentiles of the echo servers (halo, epoll,
#                     io_uring) per connection count
#   latency_http.svg  latency percentiles of halo's HTTP server and nginx
# Usage: sh bench/charts.sh [results.jsonl [outdir]]
# Every line must be a flat JSON object as bench/bench.h describes; the first
# one that is not stops the script with its line number and exit status 1.
set -u
in=${1:-bench/results.jsonl}
out=${2:-bench/charts}

die() { echo "charts: $*" >&2; exit 1; }

[ -r "$in" ] || die "cannot read $in"
tmp=$(mktemp -d) || die "no temp dir"
trap 'rm -rf "$tmp"' EXIT

# Validate and split: ratio rows to $tmp/ratios ("ratio<TAB>label"), latency
# rows to $tmp/lat_<bench> ("case<TAB>percentile<TAB>us"). Blank lines are
# allowed; anything else that is not a flat object with the keys bench.h
# writes is an error naming the line.
awk -v file="$in" -v tmp="$tmp" '
function bad(why) {
	printf "charts: %s:%d: malformed results line (%s): %s\n", file, NR, why, \
		substr($0, 1, 120) > "/dev/stderr"
	failed = 1
	exit 1
}
function str(k,   m) {
	if (!match($0, "\"" k "\":\"[^\"]*\""))
		return ""
	m = substr($0, RSTART, RLENGTH)
	sub("^\"" k "\":\"", "", m)
	sub("\"$", "", m)
	return m
}
function num(k,   m) {
	if (!match($0, "\"" k "\":-?[0-9][0-9.eE+-]*[,}]"))
		return ""
	m = substr($0, RSTART, RLENGTH - 1)
	sub("^\"" k "\":", "", m)
	return m
}
BEGIN {
	pair = "\"[a-z_]+\":(\"[^\"]*\"|-?[0-9][0-9.eE+-]*|true|false)"
	obj = "^\\{" pair "(," pair ")*\\}$"
}
/^[ \t\r]*$/ { next }
{
	if ($0 !~ obj)
		bad("not a flat JSON object")
	b = str("bench"); c = str("case"); m = str("metric"); v = num("value")
	if (b == "" || c == "" || m == "" || v == "" || str("unit") == "")
		bad("needs bench, case, metric, a numeric value and unit")
	if (index($0, "\"baseline\":")) {
		r = num("ratio")
		if (str("baseline") == "" || num("baseline_value") == "" || r == "")
			bad("a baseline needs baseline_value and a numeric ratio")
		if (r + 0 <= 0)
			bad("ratio must be positive")
		printf "%s\t%s/%s %s vs %s\n", r, b, c, m, str("baseline") \
			> (tmp "/ratios")
	}
	if ((b == "echo" || b == "http") && m ~ /^p[0-9]+_us$/) {
		key = b SUBSEP c SUBSEP m
		if (!(key in seen)) { # halo rows repeat once per baseline
			seen[key] = 1
			p = substr(m, 2, length(m) - 4)
			printf "%s\t%s\t%s\n", c, p, v > (tmp "/lat_" b)
		}
	}
}
END { if (!failed && NR == 0) print "charts: " file " is empty" > "/dev/stderr" }
' "$in" || exit 1

command -v gnuplot >/dev/null 2>&1 ||
	die "gnuplot is missing: install it with make deps-bench"
mkdir -p "$out" || die "cannot make $out"

# A gnuplot string literal.
q() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"; }

ratios() {
	[ -s "$tmp/ratios" ] || { echo "charts: no ratios in $in" >&2; return 0; }
	n=$(wc -l < "$tmp/ratios")
	awk -F '\t' '{ print NR - 1, $1 }' "$tmp/ratios" > "$tmp/ratios.dat"
	tics=$(awk -F '\t' '{ gsub(/[\\"]/, "\\\\&", $2)
		printf "%s\"%s\" %d", (NR > 1 ? ", " : ""), $2, NR - 1 }' \
		"$tmp/ratios")
	range=$(awk -F '\t' 'BEGIN { lo = 1; hi = 1 }
		{ if ($1 < lo) lo = $1; if ($1 > hi) hi = $1 }
		END { printf "%g:%g", lo / 1.6, hi * 1.6 }' "$tmp/ratios")
	gnuplot <<EOF || die "gnuplot failed on ratios.svg"
set terminal svg size 1000,$((90 + 17 * n)) dynamic noenhanced font "sans,10" background rgb "white"
set output $(q "$out/ratios.svg")
set title $(q "halo against its baselines: ratio > 1 means halo is better ($(basename "$in"))")
set logscale x 2
set xrange [$range]
set yrange [$n:-1]
set ytics ($tics) font "sans,9"
set xlabel "ratio (log scale)"
set grid xtics
set arrow from 1, graph 0 to 1, graph 1 nohead lw 2 lc rgb "black"
unset key
set style fill solid 0.8 noborder
plot $(q "$tmp/ratios.dat") using (sqrt(\$2)):1:(\$2 < 1 ? \$2 : 1):(\$2 < 1 ? 1 : \$2):(\$1 - 0.38):(\$1 + 0.38):(\$2 < 1 ? 0xc0392b : 0x2e8b57) with boxxyerror lc rgb variable, \
     '' using (\$2 >= 1 ? \$2 : 1/0):1:(sprintf(" %.2f", \$2)) with labels left font "sans,8", \
     '' using (\$2 < 1 ? \$2 : 1/0):1:(sprintf("%.2f ", \$2)) with labels right font "sans,8"
EOF
}

# Latency percentiles of bench $1 (echo or http): one cluster per server and
# connection count, one bar per percentile, log scale.
latency() {
	f="$tmp/lat_$1"
	[ -s "$f" ] || { echo "charts: no $1 latency in $in" >&2; return 0; }
	# Columns: percentiles present, in order (p999 is 99.9).
	awk -F '\t' '
	function pv(p) { return length(p) > 2 ? p / 10 ^ (length(p) - 2) : p + 0 }
	{
		if (!($1 in row)) { row[$1] = ++nr; name[nr] = $1 }
		if (!($2 in col)) { col[$2] = 1; cols[++nc] = $2 }
		v[$1, $2] = $3
	}
	END {
		for (i = 1; i <= nc; i++)      # sort the few columns by value
			for (j = i + 1; j <= nc; j++)
				if (pv(cols[j]) < pv(cols[i])) {
					t = cols[i]; cols[i] = cols[j]; cols[j] = t
				}
		printf "server"
		for (j = 1; j <= nc; j++) printf "\tp%s", pv(cols[j])
		printf "\n"
		for (i = 1; i <= nr; i++) {
			printf "%s", name[i]
			for (j = 1; j <= nc; j++) {
				k = name[i] SUBSEP cols[j]
				printf "\t%s", (k in v) ? v[k] : "NaN"
			}
			printf "\n"
		}
	}' "$f" > "$f.dat"
	nc=$(head -1 "$f.dat" | awk -F '\t' '{ print NF - 1 }')
	plot="plot $(q "$f.dat") using 2:xtic(1) title columnheader(2)"
	i=3
	while [ $i -le $((nc + 1)) ]; do
		plot="$plot, '' using $i title columnheader($i)"
		i=$((i + 1))
	done
	case $1 in
	echo) title="echo servers: latency percentiles (aux_loadgen)" ;;
	*) title="HTTP servers: latency percentiles (wrk --latency)" ;;
	esac
	gnuplot <<EOF || die "gnuplot failed on latency_$1.svg"
set terminal svg size 1000,480 dynamic noenhanced font "sans,10" background rgb "white"
set output $(q "$out/latency_$1.svg")
set title $(q "$title, lower is better ($(basename "$in"))")
set datafile separator "\t"
set datafile missing "NaN"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set yrange [10:*]
set ylabel "latency (us, log scale)"
set xtics font "sans,9"
set grid ytics
set key top left
$plot
EOF
}

ratios
latency echo
latency http
echo "charts: $(ls "$out"/*.svg 2>/dev/null | tr '\n' ' ')" >&2
