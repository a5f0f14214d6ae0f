# Faro's build, test and demo entry points. `make test` is what CI runs.
GO        ?= go
BIN       := bin
TESTENV   ?= $(CURDIR)/.cache/testenv
export FARO_TESTENV_ASSETS := $(TESTENV)

PLUGINS   := $(notdir $(wildcard plugins/examples/*))

.PHONY: all build test test-unit test-e2e testenv demo plugins image deploy-rbac fmt lint vet bench bench-e2e fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/faro ./cmd/faro

## testenv: build etcd and kube-apiserver from pinned modules (only when missing or re-pinned)
testenv:
	hack/testenv/build.sh

## plugins: build the example WASM plugins into bin/plugins
plugins:
	@mkdir -p $(BIN)/plugins
	@for p in $(PLUGINS); do \
		echo "plugins: $$p"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildmode=c-shared -o $(BIN)/plugins/$$p.wasm ./plugins/examples/$$p || exit 1; \
	done

## image: an OCI image archive (bin/faro-image.tar) without a Docker daemon: static faro and the
## example plugins on an empty base, user 65532; load it with podman/docker load or push it with crane
IMAGE     ?= faro:latest
GOARCH    ?= $(shell $(GO) env GOARCH)
image: plugins
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags="-s -w" -o $(BIN)/image/faro ./cmd/faro
	$(GO) run ./hack/image --binary $(BIN)/image/faro --plugins $(BIN)/plugins --arch $(GOARCH) --tag $(IMAGE) --out $(BIN)/faro-image.tar \
		$$(test -f /etc/ssl/certs/ca-certificates.crt && echo --ca-certs /etc/ssl/certs/ca-certificates.crt)

## deploy-rbac: regenerate deploy/rbac.yaml from deploy/faro.yaml (a test checks they agree)
deploy-rbac:
	$(GO) run ./cmd/faro rbac --config deploy/faro.yaml --service-account faro-system/faro --leader-elect > deploy/rbac.yaml

## test: vet, unit tests with the race detector, then the e2e tests against a real apiserver
## (the e2e tests run without -race: the race detector makes wazero compile plugins ~10x slower)
test: vet test-unit test-e2e

vet:
	$(GO) vet ./...
	$(GO) vet -tags pprof ./internal/metrics

test-unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/e2e)
	$(GO) test -race -count=1 -tags pprof -run Pprof ./internal/metrics

test-e2e: testenv
	$(GO) test -count=1 -timeout 20m ./test/e2e/...

## demo: run Faro against an embedded local test cluster and drive some objects through it
demo: testenv build plugins
	$(GO) run ./internal/demo

fmt:
	gofmt -w $$(git ls-files '*.go')

## lint: gofmt, go vet and staticcheck (pinned, fetched through the Go module proxy)
lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: run each fuzz target for FUZZTIME, one at a time (Go fuzzes one target per run);
## their seeds (f.Add and testdata/fuzz) already run in `make test`. A failure is
## written to the package's testdata/fuzz/FuzzXxx/: fix it and keep it as a seed.
FUZZTIME     ?= 30s
FUZZ_TARGETS := ./config:FuzzParse ./rules:FuzzMatch ./internal/object:FuzzDecode ./internal/celpred:FuzzCompile ./internal/wasmhost:FuzzHostABI \
                ./plugins/sdk/abi:FuzzParseHeader ./plugins/sdk/abi:FuzzParseChanges
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz: $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

## bench-e2e: faro processes against a plain informer on the local cluster: initial list of N ConfigMaps
## (time, peak RSS) and CPU per update; one table (`N=100000 make bench-e2e` for the large run).
## PROFILES=DIR also writes each Faro contender's heap profile (after the list) into DIR
## (Faro is then built with -tags pprof, the build that serves --pprof-bind-address).
N         ?= 10000
PROFILES  ?=
bench-e2e: testenv
	$(GO) run ./internal/benche2e -n $(N) $(if $(PROFILES),-heap-profiles $(PROFILES))

clean:
	rm -rf $(BIN)
