# local-p2p. Every target installs what it needs (npm ci) and builds (tsc) first.
SHELL := /bin/bash
NODE_MODULES := node_modules/.package-lock.json
SOURCES := $(shell find src streams bench -name '*.ts' 2>/dev/null)
BUILD := dist/.stamp
LP2P := ./bin/lp2p
# (LP2P_TRACKER, LP2P_SHARE and LP2P_OUT count here too, as they do for lp2p: the targets pass flags, which win over them)
TRACKER ?= $(or $(LP2P_TRACKER),127.0.0.1:7070)
SHARE ?= $(or $(LP2P_SHARE),./files)
OUT ?= $(or $(LP2P_OUT),./downloads)
# (passed to recipes through the environment, so names with quotes or spaces reach lp2p as they are)
export TRACKER SHARE OUT FILE

.PHONY: all install browser build typecheck test test-unit test-integration demo bench bench-swarm bench-sim simulate tracker peer get ls status session clean

all: build

$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NODE_MODULES)

## Debian's Chromium for the dashboard's browser spec (playwright-core drives it; nothing is downloaded by npm).
## Installed with apt when missing and we are root; otherwise that one spec says why it skips.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo 'installing Debian chromium for the browser spec'; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

$(BUILD): $(NODE_MODULES) $(SOURCES) tsconfig.json tsconfig.build.json
	npx tsc -p tsconfig.build.json
	@touch $@

build: $(BUILD)

typecheck: $(NODE_MODULES)
	npx tsc --noEmit -p tsconfig.json

## The tests: type-check, then unit and marble specs, then integration specs with real processes.
test: $(BUILD) typecheck browser
	npx jest --ci

test-unit: $(BUILD)
	npx jest --ci --testPathIgnorePatterns integration

test-integration: $(BUILD) browser
	npx jest --ci test/integration

## The main job on embedded defaults: a local demo swarm (tracker + 2 peers + get, on 127.0.0.1).
demo: $(BUILD)
	$(LP2P) demo

## 1 peer -> 1 leecher on a 1 GiB file, against a plain Node TCP pipe measured in the same run.
bench: $(BUILD)
	node dist/bench/bench.js

## 1 seeder + N leechers (N = 4 and 8), every upload capped: time against the Kumar-Ross bound, seeder upload / F.
bench-swarm: $(BUILD)
	node dist/bench/swarm.js

## The simulator against real processes: 1 seeder + 4 leechers both ways (same F and caps), their time ratio; then 100 and 1,000 simulated nodes.
bench-sim: $(BUILD)
	node dist/bench/sim.js

## A simulated swarm in virtual time (see lp2p simulate --help): make simulate ARGS='--nodes 1000'
simulate: $(BUILD)
	$(LP2P) simulate $(ARGS)

tracker: $(BUILD)
	$(LP2P) tracker

peer: $(BUILD)
	$(LP2P) peer --share "$$SHARE" --tracker "$$TRACKER"

get: $(BUILD)
	@test -n "$$FILE" || { echo 'usage: make get FILE=<name or id prefix> [OUT=./downloads]'; exit 2; }
	$(LP2P) get "$$FILE" --out "$$OUT" --tracker "$$TRACKER"

ls: $(BUILD)
	$(LP2P) ls --tracker "$$TRACKER"

status: $(BUILD)
	$(LP2P) status --tracker "$$TRACKER"

## A script against the library API (ts-node; types are checked by make typecheck):
## make session SCRIPT=examples/leech-many.ts [ARGS='a.iso b.iso'] [LP2P_TRACKER=host:port]
session: $(NODE_MODULES)
	@test -n "$(SCRIPT)" || { echo 'usage: make session SCRIPT=examples/<script>.ts [ARGS=...]'; ls examples/*.ts; exit 2; }
	@case '$(SCRIPT)' in *.ts) ;; *) echo 'make session: SCRIPT must be a .ts file'; exit 2;; esac
	@test -f '$(SCRIPT)' || { echo 'make session: $(SCRIPT) not found'; exit 2; }
	TS_NODE_TRANSPILE_ONLY=1 npx ts-node '$(SCRIPT)' $(ARGS)

clean:
	rm -rf dist
