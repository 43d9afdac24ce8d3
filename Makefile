# nvmeof-csi — build, test and verify. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
GO ?= go
# Every pinned tool version (GOLANGCI_LINT_VERSION here; the scripts under hack/ source it).
include versions.env
MODULE := github.com/nvmeof-csi/nvmeof-csi
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w \
	-X $(MODULE)/pkg/version.Version=$(VERSION) \
	-X $(MODULE)/pkg/version.Commit=$(COMMIT) \
	-X $(MODULE)/pkg/version.BuildDate=$(BUILD_DATE)
BINARIES := nvmeof-csi nvmeof-agent
# One directory per version, so a changed GOLANGCI_LINT_VERSION installs that version.
GOLANGCI_LINT := bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
# The VM tier boots one VM per test package; run them one at a time on small machines.
VM_TEST_FLAGS ?= -count=1 -p 1 -v -timeout 45m

.PHONY: all build demo test test-unit test-fuzz test-manifests test-vm test-twokernel test-k8s bench verify verify-generate lint generate deps clean
all: build

build: $(addprefix bin/,$(BINARIES)) bin/nvmeofctl bin/kubectl-nvmeof

bin/%: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/$*

## bin/nvmeofctl: the operator's CLI (own Go module: it alone needs client-go); installed as
## bin/kubectl-nvmeof on PATH it is the kubectl plugin `kubectl nvmeof`
bin/nvmeofctl: FORCE
	cd nvmeofctl && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o ../bin/nvmeofctl .

bin/kubectl-nvmeof: bin/nvmeofctl
	cp bin/nvmeofctl bin/kubectl-nvmeof

FORCE:

## deps: install the Debian packages and the guest kernel the tests need (idempotent)
deps:
	bash hack/install-deps.sh

## demo: the main job: a production volume, a snapshot, 16 dev environments cloned from it and a
## full copy to compare, through the real CSI API against the real kernel (in the VM unless this
## host has NVMe-oF), on a dm-thin pool (DEMO_FLAGS=--backend=lvm for LVM); CI's short run:
## make demo DEMO_FLAGS='--clones 4 --dataset-size 64Mi --volume-size 2Gi'
demo: deps bin/nvmeof-demo
	bin/nvmeof-demo $(DEMO_FLAGS)

## test: unit tier, manifests, then the VM tier (real kernel in qemu); the Kubernetes tier is
## make test-k8s (CI runs make test and the group snapshot and changed-block tracking part of it)
test: test-unit test-fuzz test-manifests test-vm

test-unit:
	$(GO) test -race ./...
	cd nvmeofctl && $(GO) test -race ./...

## test-fuzz: every Go fuzz target under pkg/ (parsers of IDs, parameters, publish_context,
## configuration, kernel replies, the dm-thin journal) searched for FUZZTIME (4s) each
test-fuzz:
	bash hack/fuzz.sh

## test-manifests: kustomize and Helm rendered in-process, decoded strictly into the Kubernetes
## API types, checked against each other and against the binaries' flags (own Go module)
test-manifests:
	cd tests/manifests && $(GO) test -count=1 ./...

## test-vm: every VM package, the two-kernel tier (tests/twokernel) included
test-vm: deps
	$(GO) test -tags vm $(VM_TEST_FLAGS) ./tests/...

## test-twokernel: only the two-kernel tier: storage VMs and a worker VM, each its own kernel,
## on a private link
test-twokernel: deps
	$(GO) test -tags vm $(VM_TEST_FLAGS) ./tests/twokernel

## test-k8s: a real one-node Kubernetes cluster in the VM (etcd, control plane, containerd,
## kubelet) runs our image and the e2e overlay of our manifests with the real CSI sidecars:
## scenario tests through the API, then the Kubernetes external-storage suite (own Go module;
## binaries and images are built and cached first)
test-k8s: deps bin/kubectl-nvmeof
	bash hack/build-k8s.sh
	bash hack/build-images.sh
	@# One package (cluster/ has no tests): go test streams -v output only for a single package.
	cd tests/e2e && $(GO) test -tags vm -count=1 -v -timeout 150m $(K8S_TEST_FLAGS) .

## bench: the storage engine against the real kernel in the VM: agent operations per backend
## (dmthin, lvm), p50 as the pool grows to 1,000 volumes, and CSI CreateVolume vs the agent's
## own; then the dm-thin pool's in-process latencies and its cost with 1,000 volumes; prints
## Markdown tables (about 35 minutes under TCG, most of it LVM; one backend:
## make bench BENCH_RUN='TestBench/dmthin|TestLatency|TestThousandVolumes')
BENCH_RUN ?= TestBench|TestLatency|TestThousandVolumes
bench: deps
	$(GO) test -tags 'vm bench' -count=1 -p 1 -v -run '$(BENCH_RUN)' -timeout 90m ./tests/bench/ ./tests/dmthin/

## verify: generated code up to date, then lint
verify: verify-generate lint

## lint: formatting, vet and golangci-lint (both tiers, every module); reads the tree only
lint: $(GOLANGCI_LINT)
	@out=$$(gofmt -l cmd pkg internal tests nvmeofctl); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@# No file is built only without a tag (checked here), so the tagged runs see every file;
	@# the untagged vet checks that the tagless build stands on its own.
	@if git grep -l '^//go:build.*!' -- '*.go'; then echo "lint: files above are built only without a tag: the tagged runs miss them"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags 'vm bench' ./...
	$(GOLANGCI_LINT) run --build-tags vm,bench ./...
	cd tests/manifests && $(GO) vet ./... && ../../$(GOLANGCI_LINT) run --config ../../.golangci.yml ./...
	cd tests/e2e && $(GO) vet -tags vm ./... && ../../$(GOLANGCI_LINT) run --config ../../.golangci.yml --build-tags vm ./...
	cd nvmeofctl && $(GO) vet ./... && ../$(GOLANGCI_LINT) run --config ../.golangci.yml ./...

# golangci-lint at GOLANGCI_LINT_VERSION (versions.env), built from the Go module proxy into
# bin/tools on first use.
$(GOLANGCI_LINT):
	GOBIN=$(CURDIR)/$(dir $(GOLANGCI_LINT)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

generate:
	$(GO) generate ./...
	cd tests/manifests && $(GO) run ./cmd/gen-images

## verify-generate: regenerating the committed code must change nothing
verify-generate: generate
	@git diff --exit-code -- '*.pb.go' deploy/kubernetes/base/kustomization.yaml || { echo "verify: generated code is stale; run make generate and commit"; exit 1; }
	@out=$$(git ls-files --others --exclude-standard pkg | grep '\.pb\.go$$' || true); if [ -n "$$out" ]; then echo "verify: uncommitted generated files: $$out"; exit 1; fi

clean:
	rm -rf bin
