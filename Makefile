# Thin wrapper around CMake: setup, build, test, run.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the project needs (build, tests, LLVM JIT, plots).
PACKAGES := build-essential cmake pkg-config llvm-19-dev libzstd-dev \
            liblua5.4-dev libcmocka-dev gnuplot-nox

.PHONY: all build setup test test-asan run clean

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Installs only what is missing, so running it twice is cheap.
setup:
	@missing=$$(for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "all packages present"; fi

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The whole suite under AddressSanitizer + UBSan.
test-asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS=-DRECALL_SANITIZE=ON

# Memory errors and leaks under valgrind memcheck: `recall exec` on a
# golden file (the hybrid: attention, conv and scan kernels, forward and
# backward) through the JIT and the interpreter, a short `recall train`
# (JIT, 2 threads: training, checkpoint, sweep) and a tiny `recall run`
# (tests/valgrind_run.lua, interpreter: worker pool, results, report).
# Any error or a definitely lost block fails it. No suppressions are needed: the only leak kind
# reported besides still-reachable is "possibly lost" inside LLVM (its
# IR objects are addressed past their operand arrays, and the JIT lives
# until exit), which is not counted as an error. LLVM compiles ~40x slower
# under valgrind, so this takes several minutes: it is not in .ci/run.
VALGRIND_PACKAGES := valgrind
GOLDEN ?= ../shared/golden
VG_DIR = $(BUILD)/valgrind
VALGRIND := valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
            --errors-for-leak-kinds=definite --show-leak-kinds=definite,indirect \
            --num-callers=30 -q
VG_TINY := --set K=8 --set L=4 --set layers=1 --set steps=20 --set eval_every=10 --set batch=8 \
           --set test_size=16 --set sweep_n=4

.PHONY: setup-valgrind check-valgrind
setup-valgrind:
	@$(MAKE) --no-print-directory setup PACKAGES="$(VALGRIND_PACKAGES)"

check-valgrind: setup-valgrind build
	@g=$(GOLDEN)/hybrid_K16_d8_L16.safetensors; \
	test -f $$g || { echo "check-valgrind: $$g is missing (set GOLDEN=DIR)"; exit 1; }; \
	rm -rf $(VG_DIR) && mkdir -p $(VG_DIR) && t0=$$(date +%s) && \
	for b in jit interp; do \
	  echo "check-valgrind: recall exec (hybrid, --backend $$b)" && \
	  $(VALGRIND) ./$(BUILD)/recall exec specs/models/hybrid.lua --set K=16 --set d=8 \
	    --set L=16 --set layers=2 --set d_state=16 --set expand=2 --set d_conv=4 \
	    --set dt_rank=1 --weights $$g --tokens $$g --backend $$b \
	    -o $(VG_DIR)/exec_$$b.safetensors || exit 1; \
	done && \
	echo "check-valgrind: recall train (mamba, JIT, 2 threads)" && \
	$(VALGRIND) ./$(BUILD)/recall train specs/models/mamba.lua $(VG_TINY) \
	  --threads 2 -o $(VG_DIR)/train && \
	echo "check-valgrind: recall run (2 runs, interpreter, -j 2)" && \
	$(VALGRIND) ./$(BUILD)/recall run tests/valgrind_run.lua -o $(VG_DIR)/run -j 2 \
	  --backend interp && \
	echo "check-valgrind: no memory errors, no definite leaks ($$(( $$(date +%s) - t0 )) s)"

# The main job: the whole study (Problems 1-3, 3 seeds) with its report and
# figures in runs/study. --resume: running it again finishes an interrupted
# study instead of refusing to overwrite it.
run: build
	./$(BUILD)/recall run specs/experiments/study.lua -o runs/study -j 2 --resume

# PyTorch side of the benchmark (bench/README.md): Debian's CPU PyTorch 1.13.
# OpenBLAS, since PyTorch on the reference libblas is several times slower;
# tcmalloc, which bench/compare preloads (PyTorch at its best, as the
# targets' anchor was measured: a d 8 Mamba step ~30% faster than on glibc).
BENCH_PACKAGES := python3-torch python3-numpy libopenblas0-openmp libtcmalloc-minimal4

.PHONY: setup-bench
setup-bench:
	@$(MAKE) --no-print-directory setup PACKAGES="$(BENCH_PACKAGES)"

clean:
	rm -rf build build-asan build-fuzz

# Fuzzing (tests/fuzz/README in targets.h): libFuzzer targets built with
# clang under ASan + UBSan, each run FUZZ_SECONDS. Crashes land in
# $(FUZZ_BUILD)/crashes/<target>/; once fixed, copy the input into
# tests/corpus/<target>/, which `make test` replays (test_corpus).
FUZZ_PACKAGES := clang
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := safetensors ir_parse lua_graph
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined

.PHONY: setup-fuzz fuzz fuzz-build
setup-fuzz:
	@$(MAKE) --no-print-directory setup PACKAGES="$(FUZZ_PACKAGES)"

fuzz-build: setup-fuzz
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_C_FLAGS="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link" >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target recall_ir recall_frontend recall_runtime recall_codegen
	for t in $(FUZZ_TARGETS); do \
	  clang $(FUZZ_FLAGS) -fsanitize=fuzzer -Iir -Ifrontend -Iruntime \
	    tests/fuzz/fuzz_$$t.c tests/fuzz/targets.c -o $(FUZZ_BUILD)/fuzz_$$t \
	    $(FUZZ_BUILD)/librecall_frontend.a $(FUZZ_BUILD)/librecall_runtime.a \
	    $(FUZZ_BUILD)/librecall_codegen.a $(FUZZ_BUILD)/librecall_ir.a \
	    $$(pkg-config --libs lua5.4) -L$$(llvm-config-19 --libdir) -lLLVM-19 -lpthread -lm \
	    || exit 1; \
	done

# Each target from a scratch copy of its corpus (the checked-in corpus
# stays as it is); -timeout: a single input running longer is a finding.
fuzz: fuzz-build
	@failed=; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crashes/$$t; \
	  cp tests/corpus/$$t/* $(FUZZ_BUILD)/corpus/$$t/; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s, log $(FUZZ_BUILD)/fuzz_$$t.log"; \
	  RECALL_ROOT=$(CURDIR) $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t/ $(FUZZ_BUILD)/corpus/$$t \
	    >$(FUZZ_BUILD)/fuzz_$$t.log 2>&1 || failed="$$failed $$t"; \
	  grep -E "^(stat::|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)" \
	    $(FUZZ_BUILD)/fuzz_$$t.log | head -12; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed"; exit 1; fi
