# cvisor: the README's commands. Meson + ninja do the building; this file only
# names the steps. Build trees live under build/ (never committed).
BUILD   := build
RELEASE := $(BUILD)/release
DEBUG   := $(BUILD)/debug
FUZZ    := $(BUILD)/fuzz

.PHONY: all deps build-deps demo test unit fuzz fuzz-smoke bench clean FORCE

all: $(BUILD)/cvisor

build-deps:
	@tools/deps.sh build

deps:
	@tools/deps.sh all

$(RELEASE)/build.ninja: | build-deps
	meson setup $(RELEASE) --buildtype=debugoptimized >/dev/null

$(BUILD)/cvisor: $(RELEASE)/build.ninja FORCE
	@ninja -C $(RELEASE) >/dev/null || ninja -C $(RELEASE)
	@ln -sf release/cvisor $(BUILD)/cvisor
	@ln -sf release/cvisord $(BUILD)/cvisord

# unit tests: AddressSanitizer + UndefinedBehaviorSanitizer
$(DEBUG)/build.ninja: | build-deps
	meson setup $(DEBUG) --buildtype=debug -Dtests=true -Db_sanitize=address,undefined \
		-Db_lundef=false >/dev/null

unit: $(DEBUG)/build.ninja
	@ninja -C $(DEBUG) >/dev/null || ninja -C $(DEBUG)
	meson test -C $(DEBUG) --print-errorlogs

$(FUZZ)/build.ninja: | build-deps
	CC=clang meson setup $(FUZZ) --buildtype=debug -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null

fuzz: $(FUZZ)/build.ninja
	ninja -C $(FUZZ)
	tools/fuzz.sh $(FUZZ) $${FUZZ_SECONDS:-600}

demo: deps all
	tools/rig/demo.sh

test: deps all
	tools/test.sh

bench: deps all
	tools/rig/bench.sh

clean:
	rm -rf $(RELEASE) $(DEBUG) $(FUZZ) $(BUILD)/cvisor $(BUILD)/cvisord

FORCE:
