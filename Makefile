# The two set-up commands (README): `make demo` and `make test`. Both install what is missing
# first, so they work on a machine that has never seen zmesh.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo clean

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

clean:
	rm -rf $(BUILD)
