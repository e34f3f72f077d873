# pe - plain GNU make. Overridable: CC, CFLAGS, LDFLAGS, PREFIX, DESTDIR.
#   make                 build libpe.a and the programs into build/
#   make SANITIZE=1      the same with ASan+UBSan into build-asan/
#   make SANITIZE=thread the same with TSan into build-tsan/
#   make test            install packages, build, run every test (also under ASan)
#   make demo            install packages, build, run the main job on ./pe.lmdb
#   make fuzz            build the libFuzzer targets (clang) into build-fuzz/
#   make install         programs and man pages under $(DESTDIR)$(PREFIX)

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
PREFIX ?= /usr/local
OPT ?= -O2
CFLAGS ?= $(OPT) -g
WARN := -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter
CPPFLAGS += -D_GNU_SOURCE -Ilib -Iformats -Ikernels
LDLIBS := -llmdb -lxxhash -ljpeg -lpng -ltiff -ldeflate -lz -lpthread -lm
# OpenBLAS for the training kernels' GEMM when installed (libopenblas-dev);
# without it kernels/cpu/gemm.c uses its own blocked AVX2 fallback.
ifneq ($(wildcard /usr/include/x86_64-linux-gnu/cblas.h /usr/include/cblas.h /usr/include/openblas/cblas.h),)
CPPFLAGS += -DPE_HAVE_OPENBLAS
LDLIBS := -llmdb -lxxhash -ljpeg -lpng -ltiff -ldeflate -lz -lopenblas -lpthread -lm
BLAS_MSG := with OpenBLAS
else
BLAS_MSG := without OpenBLAS (fallback GEMM)
endif

SANITIZE ?=
ifeq ($(SANITIZE),1)
B := build-asan
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SANITIZE),thread)
B := build-tsan
SANFLAGS := -fsanitize=thread
else
B := build
SANFLAGS :=
endif

NVCC := $(shell command -v nvcc 2>/dev/null)
ifneq ($(NVCC),)
CUDA_MSG := pe: CUDA toolkit found ($(NVCC)); the CUDA backend has no sources yet, nothing to build
else
CUDA_MSG := pe: nvcc not found; building without the CUDA backend
endif

LIB_SRC := $(wildcard lib/*.c formats/*.c kernels/cpu/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
CMD_SRC := $(wildcard cmd/pe-*.c)
PROGS := $(CMD_SRC:cmd/%.c=$(B)/bin/%)
TEST_SRC := $(wildcard tests/unit/test_*.c)
TESTS := $(TEST_SRC:tests/unit/%.c=$(B)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
HDRS := $(wildcard lib/*.h formats/*.h kernels/*.h kernels/cpu/*.h)

.PHONY: all deps test test-unit test-cli test-asan test-tsan test-fuzz fuzz demo bench clean install cuda-note
all: cuda-note $(B)/libpe.a $(PROGS) $(TESTS)

cuda-note:
	@echo "$(CUDA_MSG); $(BLAS_MSG)"

$(B)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) $(SANFLAGS) -c $< -o $@

# GCC 12 at -O2 vectorises only loops with a known trip count; the
# streaming kernels run 1.2-3x faster at -O3 (bench/kernels.c).
$(B)/obj/kernels/cpu/%.o: CFLAGS += -O3

$(B)/libpe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/bin/%: cmd/%.c $(B)/libpe.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) $(SANFLAGS) $< $(B)/libpe.a $(LDFLAGS) $(LDLIBS) -o $@

$(B)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(B)/libpe.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(WARN) $(CFLAGS) $(SANFLAGS) $< $(B)/libpe.a $(LDFLAGS) $(LDLIBS) -o $@

deps:
	@sh scripts/install-deps.sh

# The unit and CLI tests run twice: on the optimised build and under ASan+UBSan.
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@$(MAKE) --no-print-directory SANITIZE=thread all
	@$(MAKE) --no-print-directory fuzz
	@sh tests/run.sh

test-unit test-cli: all
	@sh tests/run.sh $(subst test-,,$@) $(B)

fuzz:
	@$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh $(B)/bin

bench: deps
	@sh scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	@sh bench/ingest.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 docs/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1

clean:
	rm -rf build build-asan build-tsan build-fuzz
