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

run: build
	./$(BUILD)/recall ir specs/ir/attention.ir

# PyTorch side of the benchmark (bench/README.md): Debian's CPU PyTorch 1.13.
# OpenBLAS, since PyTorch on the reference libblas is several times slower.
BENCH_PACKAGES := python3-torch python3-numpy libopenblas0-openmp

.PHONY: setup-bench
setup-bench:
	@$(MAKE) --no-print-directory setup PACKAGES="$(BENCH_PACKAGES)"

clean:
	rm -rf build build-asan
