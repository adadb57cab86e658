#!/bin/sh
# make install into a temporary prefix, then build the README's example
# program with the README's own build lines and run both binaries: the shared
# one must need libhalo.so.0, the static one must not. Also a staged install
# (DESTDIR), which must not run ldconfig. Nothing is written outside a
# temporary directory. Usage: sh tests/install.sh  (from the source tree)
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/halo-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "install.sh: $*" >&2
	exit 1
}

needs_libhalo() {
	readelf -d "$1" | grep -q 'NEEDED.*\[libhalo\.so'
}

# ldconfig stand-in: a run leaves a mark (the real one must not run here).
printf '#!/bin/sh\ntouch "%s/ldconfig-ran"\n' "$tmp" > "$tmp/ldconfig"
chmod +x "$tmp/ldconfig"

make -s --no-print-directory install PREFIX="$tmp/prefix" \
	LDCONFIG="$tmp/ldconfig" > "$tmp/install.log"
[ ! -e "$tmp/ldconfig-ran" ] || fail "ldconfig ran for a private prefix"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
pkg-config --validate halo || fail "halo.pc does not validate"

# The example: the first C block after "## A complete program"; the build
# lines: those of the README that start with "cc -o demo".
awk '/^## A complete program/ { on = 1 } on && /^```c$/ { code = 1; next }
	code && /^```$/ { exit } code' README.md > "$tmp/demo.c"
grep '^cc -o demo' README.md > "$tmp/build.sh"
[ -s "$tmp/demo.c" ] || fail "no example program in README.md"
[ "$(wc -l < "$tmp/build.sh")" -eq 2 ] ||
	fail "want 2 build lines (shared, static) in README.md"
(cd "$tmp" && sh -e build.sh) || fail "a README build line failed"

expect=$(printf 'wrote 5\nread 5')
needs_libhalo "$tmp/demo" || fail "the shared build does not use libhalo.so"
got=$(LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/demo") ||
	fail "the shared build failed: $got"
[ "$got" = "$expect" ] || fail "the shared build printed: $got"
! needs_libhalo "$tmp/demo-static" ||
	fail "the static build still needs libhalo.so"
got=$("$tmp/demo-static") || fail "the static build failed: $got"
[ "$got" = "$expect" ] || fail "the static build printed: $got"

# Toolchains that do not default to --as-needed (Debian's gcc does) must get
# a static build too.
mkdir "$tmp/bin"
printf '#!/bin/sh\nexec %s -Wl,--no-as-needed "$@"\n' "$(command -v cc)" \
	> "$tmp/bin/cc"
chmod +x "$tmp/bin/cc"
rm -f "$tmp/demo-static"
(cd "$tmp" && PATH="$tmp/bin:$PATH" sh -e build.sh) ||
	fail "a README build line failed without --as-needed by default"
! needs_libhalo "$tmp/demo-static" ||
	fail "without --as-needed by default the static build needs libhalo.so"

# A staged install: everything under DESTDIR, the prefix as given, no
# ldconfig.
make -s --no-print-directory install DESTDIR="$tmp/stage" PREFIX=/usr/local \
	LDCONFIG="$tmp/ldconfig" > "$tmp/stage.log"
[ ! -e "$tmp/ldconfig-ran" ] || fail "ldconfig ran for a DESTDIR install"
for f in lib/libhalo.a lib/libhalo.so.0 lib/libhalo.so include/halo/halo.h \
	lib/pkgconfig/halo.pc; do
	[ -e "$tmp/stage/usr/local/$f" ] || fail "DESTDIR install lacks $f"
done
grep -qx 'prefix=/usr/local' "$tmp/stage/usr/local/lib/pkgconfig/halo.pc" ||
	fail "DESTDIR leaked into halo.pc"

echo "install.sh: shared and static README builds run; DESTDIR install ok"
