# fastflow — see README.md. `make demo` runs the main job, `make test` all tests.
GO        ?= go
BIN       := bin/fastflow
# Packages whose code runs on several goroutines: tested with -race too.
RACE_PKGS := ./log/... ./partition/... ./pipeline/... ./agg/...

.PHONY: all build test test-race lint vet fmt-check demo log-demo bench bench-peers clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/fastflow

test: lint
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race $(RACE_PKGS)
	cd bench/peers && $(GO) test -count=1 ./...
	cd log/kafka/compat && $(GO) test -count=1 -race ./...

lint: vet fmt-check

vet:
	$(GO) vet ./...
	cd bench/peers && $(GO) vet ./...
	cd log/kafka/compat && $(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The main job on an embedded default: the api-health pipeline on generated
# traffic with incidents, served with its dashboard (Ctrl-C to stop).
demo: build
	$(BIN) demo

# The log alone, end to end, on a temporary data directory.
log-demo: build
	./examples/log-demo.sh $(BIN)

# Hot-path benchmarks, 5 runs each; benchstat summarises them and
# bench/cmd/benchmd regenerates the tables of BENCHMARKS.md from the same run.
BENCH_PKGS ?= ./log/... ./partition/... ./agg/... ./pipeline/... ./cmd/fastflow/
bench:
	mkdir -p bench/out
	$(GO) test -run '^$$' -bench . -skip 'RunUntilEnd|RunScaling' -benchmem -count 5 $(BENCH_PKGS) | tee bench/out/bench.txt
	$(GO) test -run '^$$' -bench RunUntilEnd -benchmem -count 5 -cpu 1,2 ./pipeline/ | tee -a bench/out/bench.txt
	$(GO) test -run '^$$' -bench RunScaling -benchtime 6x -count 5 ./pipeline/ | tee -a bench/out/bench.txt
	$(GO) tool benchstat bench/out/bench.txt
	$(GO) run ./cmd/fastflow bench --json > bench/out/e2e.json
	$(GO) run ./bench/cmd/benchmd -in bench/out/bench.txt -e2e bench/out/e2e.json -peers bench/out/peers.json -md BENCHMARKS.md -cmd "make bench"

# fastflow against NATS JetStream and a hand-written pipeline, 1M events
# (its own module: nats-server stays out of fastflow's go.mod).
bench-peers:
	mkdir -p bench/out
	cd bench/peers && $(GO) run . -events 1000000 -out ../out/peers.json

clean:
	rm -rf bin fastflow-data bench/out
