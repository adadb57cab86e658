# halo: make [all|check|bench|install|clean|fuzz] [SANITIZE=1|thread] [V=1]
CC ?= gcc
PREFIX ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

ifeq ($(V),1)
Q :=
else
Q := @
endif

# FAULT=1: allocation fault injection (runtime/fault.h) for the fault tests
# and make faultsweep, in a build directory of its own.
ifeq ($(FAULT),1)
ifeq ($(SANITIZE),1)
BUILD ?= build/san-fault
else
BUILD ?= build/fault
endif
FAULTDEF := -DHALO_FAULT
endif

ifeq ($(SANITIZE),1)
BUILD ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
MODEDEF := -DHALO_NO_JEMALLOC
MEMLIB :=
else ifeq ($(SANITIZE),thread)
# ThreadSanitizer, for what crosses threads: make check SANITIZE=thread
# TESTS=group (README: the fiber switch is annotated for it in fiber.c).
BUILD ?= build/tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
MODEDEF := -DHALO_NO_JEMALLOC
MEMLIB :=
else
BUILD ?= build/rel
SANFLAGS :=
# Assertions guard invariants in debug and sanitizer builds only (STYLE.md).
MODEDEF := -DNDEBUG
MEMLIB := -ljemalloc
endif

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -fPIC -fvisibility=hidden \
	-D_GNU_SOURCE -I. $(MODEDEF) $(SANFLAGS)
CFLAGS += $(FAULTDEF)
ASFLAGS := $(SANFLAGS)
LDLIBS := -luring $(MEMLIB) -lpthread
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)

LIB_SRC := $(wildcard runtime/*.c io/*.c patterns/*.c)
LIB_ASM := $(wildcard runtime/*.S)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(LIB_ASM:%.S=$(BUILD)/%.o)
HEADERS := halo.h $(wildcard runtime/*.h io/*.h patterns/*.h)
PUBLIC_HEADERS := $(filter-out %/internal.h %/uring_compat.h runtime/ctx.h,$(HEADERS))
PUBLIC_HEADERS := $(filter-out runtime/fault.h runtime/fault_libc.h,$(PUBLIC_HEADERS))

ifeq ($(FAULT),1)
# Every raw malloc, calloc, realloc of a library source becomes a fault point.
$(filter-out $(BUILD)/runtime/pool.o $(BUILD)/runtime/fault.o,$(LIB_OBJ)): \
	CFLAGS += -include runtime/fault_libc.h
endif

# TESTS="fut loop" builds a runner with only those suites.
ifeq ($(TESTS),)
TEST_SRC := $(wildcard tests/test_*.c)
else
TEST_SRC := $(TESTS:%=tests/test_%.c)
endif
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o) $(BUILD)/tests/main.o \
	$(BUILD)/tests/util.o $(BUILD)/tests/ctx_selftest.o
TEST_BIN := $(BUILD)/tests/halo_tests
SUITES := $(patsubst tests/test_%.c,%,$(TEST_SRC))

BENCH_COMMON := $(BUILD)/bench/common.o
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
BENCH_AUX_SRC := $(wildcard bench/aux_*.c)
BENCH_AUX_BIN := $(BENCH_AUX_SRC:bench/%.c=$(BUILD)/bench/%)
EXAMPLE_DIRS := $(patsubst examples/%/,%,$(sort $(dir $(wildcard examples/*/*.c))))
EXAMPLE_BIN := $(EXAMPLE_DIRS:%=$(BUILD)/examples/%)

.PHONY: all lib check bench install clean deps deps-bench layers examples \
	benchbin fuzz cross-aarch64 charts
.PHONY: faultprogs faultsweep
all: lib examples

lib: layers $(BUILD)/libhalo.a $(BUILD)/libhalo.so

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.S
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS      $<")
	$(Q)$(CC) $(ASFLAGS) -c -o $@ $<

$(BUILD)/libhalo.a: $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libhalo.so: $(LIB_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SANFLAGS) -Wl,-soname,libhalo.so.0 -o $@ $^ $(LDLIBS)

# Layers point down only: runtime/ never sees io/ or patterns/, io/ never
# sees patterns/.
layers:
	@if grep -nE '#include *"\.\./(io|patterns)/' runtime/*.[ch] 2>/dev/null; \
	then echo "layering: runtime/ includes io/ or patterns/"; exit 1; fi
	@if grep -nE '#include *"\.\./patterns/' io/*.[ch] 2>/dev/null; \
	then echo "layering: io/ includes patterns/"; exit 1; fi

# The test runner: one Check suite per tests/test_<module>.c, each defining
# Suite *<module>_suite(void).
$(BUILD)/tests/suites.h: FORCE
	@mkdir -p $(dir $@)
	$(Q)printf '%s\n' $(SUITES) | awk '{ printf "X(%s)\n", $$1 }' > $@.new
	$(Q)cmp -s $@.new $@ && rm -f $@.new || mv $@.new $@

FORCE:

# The HTTP server suite compiles the example's connection logic in.
$(BUILD)/tests/test_httpd.o: examples/http/server.c examples/http/server.h

$(BUILD)/tests/main.o: tests/main.c $(BUILD)/tests/suites.h $(HEADERS)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -I$(BUILD)/tests -c -o $@ $<

# -rdynamic: the stall detector's tests find an exported callback's name
# with dladdr(), as a user's program linked the same way would.
$(TEST_BIN): $(TEST_OBJ) $(BUILD)/libhalo.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(SANFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libhalo.a \
		$(CHECK_LIBS) $(LDLIBS) -rdynamic

deps:
	$(Q)sh .ci/deps check

# The fault sweep (tests/fault/run.sh): programs that together use every
# module, each run with one allocation after another failed, on the
# sanitizer build with fault injection.
# (x_*: programs that still fail, swept only on request: run.sh -P x_...)
FAULT_PROG_SRC := $(wildcard tests/fault/p_*.c)
FAULT_PROG_BIN := $(FAULT_PROG_SRC:tests/fault/%.c=$(BUILD)/tests/fault/%)
FAULT_BUILD := build/san-fault
# FAULTSWEEP_ARGS: see tests/fault/run.sh -h; the default fails each point
# once and persistently, CI passes a sample.
FAULTSWEEP_ARGS ?= -p

$(BUILD)/tests/fault/prog.o: tests/fault/prog.h

$(BUILD)/tests/fault/%: tests/fault/%.c tests/fault/prog.h \
		$(BUILD)/tests/fault/prog.o $(BUILD)/libhalo.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(BUILD)/tests/fault/prog.o \
		$(BUILD)/libhalo.a $(LDLIBS)

faultprogs: lib $(FAULT_PROG_BIN)

faultsweep: deps
	$(Q)$(MAKE) --no-print-directory FAULT=1 SANITIZE=1 \
		BUILD=$(FAULT_BUILD) faultprogs
	$(Q)sh tests/fault/run.sh -b $(FAULT_BUILD) $(FAULTSWEEP_ARGS)

# The fiber context switch for aarch64, built with Debian's cross compiler
# and run under qemu-user (apt-get install gcc-aarch64-linux-gnu
# libc6-dev-arm64-cross qemu-user-static).
cross-aarch64:
	@mkdir -p build
	aarch64-linux-gnu-gcc -O2 -g -static -Wall -Wextra -Werror \
		-DCTX_SELFTEST_MAIN -I. tests/ctx_selftest.c runtime/ctx.S \
		-o build/ctx_selftest_aarch64
	qemu-aarch64-static build/ctx_selftest_aarch64

# libFuzzer over the HTTP parser for $(FUZZ_SECONDS) seconds.
FUZZ_SECONDS ?= 60
fuzz: deps
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz.sh

deps-bench:
	$(Q)sh .ci/deps bench

# CK_FORK=no make check runs every test in this one process, without Check's
# per-test timeouts; the runner fails a suite that leaves the process changed.
check: deps
	$(Q)$(MAKE) --no-print-directory lib examples $(TEST_BIN)
	$(Q)HALO_BUILD=$(BUILD) $(TEST_BIN)
	$(Q)$(if $(TESTS),,sh tests/charts.sh)

$(BUILD)/bench/%: bench/%.c $(BENCH_COMMON) $(BUILD)/libhalo.a bench/bench.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(BENCH_COMMON) $(BUILD)/libhalo.a \
		$(LDLIBS) -lm

.SECONDARY: $(BENCH_COMMON)

benchbin: lib $(BENCH_BIN) $(BENCH_AUX_BIN) examples

bench: deps-bench
	$(Q)$(MAKE) --no-print-directory benchbin
	$(Q)BUILD=$(BUILD) sh bench/run.sh

# SVG charts of bench/results.jsonl (or RESULTS=file) in bench/charts/,
# from the results file alone (make bench draws them too).
RESULTS ?= bench/results.jsonl
charts:
	$(Q)sh bench/charts.sh $(RESULTS) bench/charts

examples: $(EXAMPLE_BIN)

.SECONDEXPANSION:
$(BUILD)/examples/%: $$(wildcard examples/%/*.c) $$(wildcard examples/%/*.h) \
		$(BUILD)/libhalo.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $(filter %.c,$^) $(BUILD)/libhalo.a $(LDLIBS)

# halo.pc: liburing through Requires.private (halo.h includes liburing.h, so
# its Cflags matter too); Libs.private: what else libhalo.a needs.
install: lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig \
		$(DESTDIR)$(PREFIX)/include/halo/runtime \
		$(DESTDIR)$(PREFIX)/include/halo/io \
		$(DESTDIR)$(PREFIX)/include/halo/patterns
	install -m 644 $(BUILD)/libhalo.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libhalo.so \
		$(DESTDIR)$(PREFIX)/lib/libhalo.so.$(VERSION)
	ln -sf libhalo.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libhalo.so.0
	ln -sf libhalo.so.0 $(DESTDIR)$(PREFIX)/lib/libhalo.so
	for h in $(PUBLIC_HEADERS); do \
		install -m 644 $$h $(DESTDIR)$(PREFIX)/include/halo/$$h; done
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' \
		'includedir=$${prefix}/include' '' 'Name: halo' \
		'Description: kernel-assisted I/O runtime on io_uring' \
		'Version: $(VERSION)' 'Requires.private: liburing' \
		'Libs: -L$${libdir} -lhalo' \
		'Libs.private: $(strip $(MEMLIB) -lpthread)' \
		'Cflags: -I$${includedir}/halo -I$${includedir}' \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/halo.pc
	$(Q)$(install_ldconfig)

# The dynamic linker finds a new libhalo.so.0 in a directory its cache covers
# only once ldconfig has rebuilt the cache. So after an install straight into
# such a directory (/usr/lib, /usr/local/lib or one in /etc/ld.so.conf*), run
# it; not for a staged install (DESTDIR: the package's scripts do that), nor
# for another prefix, which the cache never covers (LD_LIBRARY_PATH or an
# rpath finds that). A missing or failing ldconfig (not root) gets a note,
# never a failed install.
LDCONFIG ?= ldconfig
INSTALL_LIBDIR := $(patsubst %/,%,$(PREFIX))/lib
define install_ldconfig
if [ -z "$(DESTDIR)" ] && { [ "$(INSTALL_LIBDIR)" = /usr/lib ] || \
	[ "$(INSTALL_LIBDIR)" = /usr/local/lib ] || \
	cat /etc/ld.so.conf /etc/ld.so.conf.d/*.conf 2>/dev/null | \
	grep -qxF "$(INSTALL_LIBDIR)"; }; then \
	PATH="$$PATH:/sbin:/usr/sbin"; \
	if ! command -v $(LDCONFIG) >/dev/null 2>&1; then \
		echo "halo: no $(LDCONFIG) here; refresh the dynamic" \
			"linker's cache before running programs that use" \
			"libhalo.so"; \
	elif ! $(LDCONFIG); then \
		echo "halo: $(LDCONFIG) failed; run it as root before" \
			"running programs that use libhalo.so"; \
	fi; \
fi
endef

clean:
	rm -rf build bench/results.jsonl.tmp
