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

# The CUDA backend (kernels/cuda/) is built when nvcc is on PATH, for
# CUDA_ARCH (CI compiles one architecture to stay short; a release build may
# list more, e.g. CUDA_ARCH="sm_80 sm_90"), as the shared object
# $(B)/lib/libpe-cuda.so that the programs load with dlopen when a GPU is
# asked for (kernels/cuda_loader.c): the programs link no CUDA library, so
# they start fast and run where CUDA is absent. They export their pe_*
# functions for it (pe_fail, pe_errmsg). The sanitizer builds leave the
# library out: ASan and TSan do not run under the CUDA driver, and the CPU
# code they check is the same.
NVCC := $(shell command -v nvcc 2>/dev/null)
CUDA_ARCH ?= sm_90
HAVE_CUDA :=
ifneq ($(NVCC),)
ifeq ($(SANITIZE),)
HAVE_CUDA := 1
endif
endif
PROG_LINK := -ldl -Wl,--export-dynamic-symbol=pe_*
ifeq ($(HAVE_CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
CU_SRC := $(wildcard kernels/cuda/*.cu)
CU_OBJ := $(CU_SRC:%.cu=$(B)/obj/%.o)
CUDA_SO := $(B)/lib/libpe-cuda.so
NVCCFLAGS := -std=c++17 -O3 $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(subst sm_,,$(a)),code=$(a)) \
    --fmad=false -Xcompiler -fPIC,-Wall,-Wextra,-Werror,-Wno-unused-parameter
CUDA_SO_LIBS := -L$(CUDA_HOME)/lib64 -Xlinker -rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublas
# NCCL (data parallelism) when its header is installed
NCCL_H := $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h /usr/local/include/nccl.h))
ifneq ($(NCCL_H),)
NVCCFLAGS += -DPE_HAVE_NCCL
CUDA_SO_LIBS += -lnccl
endif
CUDA_MSG := pe: building the CUDA backend for $(CUDA_ARCH) with $(NVCC)$(if $(NCCL_H), and NCCL, without NCCL)
else
CU_OBJ :=
CUDA_SO :=
ifeq ($(NVCC),)
CUDA_MSG := pe: nvcc not found; building without the CUDA backend
else
CUDA_MSG := pe: sanitizer build; the CUDA backend is left out
endif
endif

LIB_SRC := $(wildcard lib/*.c formats/*.c kernels/cpu/*.c) kernels/device.c kernels/cuda_loader.c
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
CMD_SRC := $(wildcard cmd/pe-*.c)
PROGS := $(CMD_SRC:cmd/%.c=$(B)/bin/%)
TEST_SRC := $(wildcard tests/unit/test_*.c)
TESTS := $(TEST_SRC:tests/unit/%.c=$(B)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
HDRS := $(wildcard lib/*.h formats/*.h kernels/*.h kernels/cpu/*.h)
CU_HDRS := $(wildcard kernels/*.h kernels/cuda/*.h kernels/cuda/*.cuh lib/pe.h)

.PHONY: all deps test test-gpu test-unit test-cli test-asan test-tsan test-fuzz fuzz demo bench clean install cuda-note
all: cuda-note $(B)/libpe.a $(B)/ldlibs $(CUDA_SO) $(PROGS) $(TESTS)

# The link flags a program built against $(B)/libpe.a needs (bench/ reads
# them: with the CUDA backend they include the CUDA libraries).
$(B)/ldlibs: Makefile
	@mkdir -p $(dir $@)
	@echo "$(LDFLAGS) $(LDLIBS) $(PROG_LINK)" > $@

cuda-note:
	@echo "$(CUDA_MSG); $(BLAS_MSG)"

$(B)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) $(SANFLAGS) -c $< -o $@

# GCC 12 at -O2 vectorises only loops with a known trip count; the
# streaming kernels run 1.2-3x faster at -O3 (bench/kernels.c).
$(B)/obj/kernels/cpu/%.o: CFLAGS += -O3

$(B)/obj/kernels/cuda/%.o: kernels/cuda/%.cu $(CU_HDRS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -D_GNU_SOURCE -Ilib -Iformats -Ikernels -Ikernels/cuda -c $< -o $@

$(CUDA_SO): $(CU_OBJ)
	@mkdir -p $(dir $@)
	$(NVCC) -shared $(CU_OBJ) $(CUDA_SO_LIBS) -o $@

$(B)/libpe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/bin/%: cmd/%.c $(B)/libpe.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) $(SANFLAGS) $< $(B)/libpe.a $(LDFLAGS) $(LDLIBS) $(PROG_LINK) -o $@

$(B)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(B)/libpe.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(WARN) $(CFLAGS) $(SANFLAGS) $< $(B)/libpe.a $(LDFLAGS) $(LDLIBS) $(PROG_LINK) -o $@

deps:
	@sh scripts/install-deps.sh

# The unit and CLI tests run twice: on the optimised build and under ASan+UBSan.
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@$(MAKE) --no-print-directory SANITIZE=thread all
	@$(MAKE) --no-print-directory fuzz
	@sh tests/run.sh

# The GPU tests (a GPU is required: without one they fail). make test runs
# them too, as unit tests that skip with a printed reason when no GPU is
# present.
test-gpu: all
	@sh tests/run.sh gpu

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
	$(if $(CUDA_SO),install -d $(DESTDIR)$(PREFIX)/lib && install -m 755 $(CUDA_SO) $(DESTDIR)$(PREFIX)/lib)
	install -m 644 docs/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1

clean:
	rm -rf build build-asan build-tsan build-fuzz
