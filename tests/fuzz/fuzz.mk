# tests/fuzz/fuzz.mk - builds the libFuzzer targets into build-fuzz/.
# Run from the repository root (`make fuzz` does: make -f tests/fuzz/fuzz.mk).
#
# Every library source the Makefile builds (lib/*.c, formats/*.c and the
# kernels/cpu/*.c that lib/ calls into; keep the lists in step) is compiled
# once, instrumented for coverage (fuzzer-no-link) and for ASan+UBSan, into
# build-fuzz/libpe-fuzz.a; each tests/fuzz/fuzz_<name>.c is linked against
# it into build-fuzz/fuzz_<name>. Wildcards pick up new targets and sources.
# UBSan is made fatal so that the fuzzer sees undefined behaviour as a crash
# instead of a line on stderr.
#
# Not for: running the targets (tests/fuzz/run.sh does) or the normal build.
# Without clang this says so in one line and succeeds.

CLANG ?= clang
FB := build-fuzz
HAVE_CLANG := $(shell command -v $(CLANG) 2>/dev/null)

FUZZ_CPPFLAGS := -D_GNU_SOURCE -Ilib -Iformats -Ikernels
FUZZ_CFLAGS := -g -O1 -std=c11 -fno-omit-frame-pointer \
    -fno-sanitize-recover=undefined
# Warnings for the targets only: the library's own flags are the Makefile's.
FUZZ_WARN := -Wall -Wextra -Werror
FUZZ_SAN := address,undefined
FUZZ_LDLIBS := -llmdb -lxxhash -ljpeg -lpng -ltiff -ldeflate -lz -lpthread -lm -ldl

FUZZ_LIB_SRC := $(wildcard lib/*.c formats/*.c kernels/cpu/*.c) kernels/device.c kernels/cuda_loader.c
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FB)/obj/%.o)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FB)/%)
FUZZ_HDRS := $(wildcard lib/*.h formats/*.h kernels/*.h kernels/cpu/*.h)

.PHONY: all
ifeq ($(HAVE_CLANG),)
all:
	@echo "pe: $(CLANG) not found; the fuzz targets are skipped"
else
all: $(FUZZ_BIN)

$(FB)/obj/%.o: %.c $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c $< -o $@

$(FB)/libpe-fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FB)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FB)/libpe-fuzz.a $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(FUZZ_WARN) -fsanitize=fuzzer,$(FUZZ_SAN) $< $(FB)/libpe-fuzz.a $(FUZZ_LDLIBS) -o $@
endif
