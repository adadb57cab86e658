#!/bin/sh
# Build the HTTP parser's libFuzzer target and run it for $FUZZ_SECONDS
# (default 60) from a small seed corpus. Exits non-zero on a crash or a broken
# invariant; the crashing input is left in build/fuzz-artifacts/.
# Run from the repository root; needs clang with libFuzzer.
set -eu

secs=${FUZZ_SECONDS:-60}
cc=${FUZZ_CC:-clang}
bin=build/fuzz_http
art=build/fuzz-artifacts/

mkdir -p build "$art"
if ! "$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I. tests/fuzz_http.c io/http.c -o "$bin"; then
	echo "fuzz: cannot build $bin: libFuzzer needs clang and its runtime" \
		"(Debian: clang, libclang-rt-14-dev)" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/corpus"
seed() { printf '%b' "$2" > "$tmp/corpus/$1"; }
seed get 'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n'
seed get10 'GET /a?b=c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'
seed post 'POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: h\r\n\r\n'
seed pipe 'GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'
seed options 'OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n'
seed absolute 'GET http://h:8080/x HTTP/1.1\r\nHost: h:8080\r\nAccept: */*\r\n\r\n'
seed fold 'GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n'
seed te 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
seed cl2 'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\ncontent-length: 01\r\n\r\nx'

cat > "$tmp/dict" <<'EOF'
"GET"
"HEAD"
"POST"
"OPTIONS"
" HTTP/1.1\x0d\x0a"
" HTTP/1.0\x0d\x0a"
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"Host: "
"Content-Length: "
"Transfer-Encoding: "
"Connection: close"
"Connection: keep-alive"
"http://"
": "
EOF

echo "fuzz: $bin for ${secs}s" >&2
"./$bin" -max_total_time="$secs" -max_len=10000 -timeout=10 \
	-dict="$tmp/dict" -artifact_prefix="$art" -print_final_stats=1 \
	"$tmp/corpus"
