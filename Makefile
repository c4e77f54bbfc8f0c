# mlflow-authz — every task a developer or CI runs is a target here.
GO        ?= go
BIN       := bin/mlflow-authz
PKG       := ./cmd/mlflow-authz
FUZZTIME  ?= 30s
BENCHTIME ?= 2s
SOAK_DURATION ?= 5m
SOAK_RATE     ?= 1000
BENCH_SECONDS ?= 3
BENCH_PAIRS   ?= 5
BENCH_SCALES  ?= 1,0.1,10
BENCH_SLICES  ?= 1
# A second binary (an earlier build) that takes its turn in every pair: an A/B of two builds.
BENCH_BASELINE ?=
# What `mlflow-authz version` prints; the Dockerfile takes the same two.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
IMAGE     ?= mlflow-authz:$(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the binary into bin/.
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) $(PKG)

.PHONY: run
run: build ## Run the self-contained demo: real service, SQLite store, development token issuer.
	./$(BIN) demo

.PHONY: test
test: ## Run every test (starts its own throwaway PostgreSQL), and validate manifests/.
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 10m ./authz ./authz/extauthz ./authz/mlflow ./store/cache
	cd manifests && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...
	cd integration/browser && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...

.PHONY: lint
lint: ## gofmt, go vet and staticcheck.
	@files=$$(git ls-files '*.go' | grep -v '\.pb\.go$$'); test -n "$$files" || { echo "lint: git lists no Go files, so gofmt would check none"; exit 1; }; \
	out=$$(gofmt -l $$files); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) build -o bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	cd manifests && $(GO) vet ./... && ../bin/staticcheck ./...
	cd integration/browser && $(GO) vet ./... && ../../bin/staticcheck ./...

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

.PHONY: image
image: ## Build the container image (needs Docker): IMAGE, VERSION, COMMIT.
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

.PHONY: bench
bench: build ## Micro-benchmarks, then the end-to-end comparison with a no-op floor (results in bench-results/).
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./authz/... ./store/cache
	MLFLOW_AUTHZ_BENCH_BINARY=$(CURDIR)/$(BIN) MLFLOW_AUTHZ_BENCH_OUT=$(CURDIR)/bench-results \
	MLFLOW_AUTHZ_BENCH_SECONDS=$(BENCH_SECONDS) MLFLOW_AUTHZ_BENCH_PAIRS=$(BENCH_PAIRS) MLFLOW_AUTHZ_BENCH_SCALES=$(BENCH_SCALES) \
	MLFLOW_AUTHZ_BENCH_BASELINE=$(BENCH_BASELINE) MLFLOW_AUTHZ_BENCH_SLICES=$(BENCH_SLICES) \
	  $(GO) test -count=1 -v -run '^TestBench$$' -timeout 60m ./integration/bench/

.PHONY: soak
soak: build ## Soak the built binary: SOAK_DURATION (5m) at SOAK_RATE (1000) rps; not part of test.
	MLFLOW_AUTHZ_SOAK_BINARY=$(CURDIR)/$(BIN) MLFLOW_AUTHZ_SOAK_DURATION=$(SOAK_DURATION) MLFLOW_AUTHZ_SOAK_RATE=$(SOAK_RATE) \
	  $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 60m ./integration/soak

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 30s).
	@set -e; for pkg in $$($(GO) list ./...); do \
	  fs=$$($(GO) test -list '^Fuzz' $$pkg) || { echo "fuzz: cannot list the targets of $$pkg"; exit 1; }; \
	  for f in $$(echo "$$fs" | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

.PHONY: generate
generate: ## Regenerate the admin API's Go code from proto/ with buf (pinned Go tools).
	$(GO) tool buf generate

.PHONY: check
check: generate ## Regenerate, then fail if the committed generated code differs.
	git diff --exit-code -- proto/
	@test -z "$$(git status --porcelain --untracked-files=all -- proto/)" || { git status --porcelain -- proto/; echo "generated code is not committed"; exit 1; }
