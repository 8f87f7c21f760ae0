# The two set-up commands (README): `make demo` and `make test`. Both install what is missing
# first, so they work on a machine that has never seen zmesh.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo image fuzz sanitize soak clean

all: build

deps:
	scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD) -j$(JOBS)

test: build
	ctest --test-dir $(BUILD) -j$(JOBS) --output-on-failure

demo: build
	scripts/demo $(BUILD)

# The zmesh image, an OCI archive: $(BUILD)/zmesh-image.oci.tar (scripts/make-image).
image: build
	scripts/make-image $(BUILD)

# libFuzzer (ASan + UBSan, clang) on the config parser, the policy matcher, the control
# protocol and the HBONE request head: FUZZ_SECONDS each (make test runs 5 s each).
FUZZ_SECONDS ?= 60
fuzz: deps
	fuzz/run --seconds $(FUZZ_SECONDS)

# The whole suite with ASan + UBSan (SANITIZE=thread for TSan); zmeshd reports leaks at exit.
# Every process's sanitizer report also goes to a file under build-*/sanitizer-reports (the lab's
# zmeshd logs are removed with the lab): any file there fails the run.
SANITIZE ?= address,undefined
SANITIZE_BUILD = build-$(subst $(comma),-,$(SANITIZE))
SANITIZE_REPORTS = $(abspath $(SANITIZE_BUILD))/sanitizer-reports
sanitize: deps
	cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZMESH_SANITIZE=$(SANITIZE)
	cmake --build $(SANITIZE_BUILD) -j$(JOBS)
	rm -rf $(SANITIZE_REPORTS) && mkdir -p $(SANITIZE_REPORTS)
	ASAN_OPTIONS=detect_leaks=1:log_path=$(SANITIZE_REPORTS)/asan UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  TSAN_OPTIONS=log_path=$(SANITIZE_REPORTS)/tsan \
	  ctest --test-dir $(SANITIZE_BUILD) -j$(JOBS) --output-on-failure -LE fuzz $(SANITIZE_TESTS); status=$$?; \
	if [ -n "$$(ls -A $(SANITIZE_REPORTS))" ]; then \
	  echo "sanitize: reports in $(SANITIZE_REPORTS):"; head -50 $(SANITIZE_REPORTS)/*; exit 1; fi; \
	exit $$status

comma := ,

# The soak for longer than make test's 20 s: SOAK_SECONDS of mixed traffic across the lab's
# nodes, both daemons' RSS and descriptors printed per round and checked for growth.
SOAK_SECONDS ?= 600
soak: build
	ZMESH_SOAK_SECONDS=$(SOAK_SECONDS) $(BUILD)/tests/e2e_tests --gtest_filter='LoadTest.Soak*'

clean:
	rm -rf $(BUILD) build-fuzz build-address-undefined build-thread
