# koordinator — build, test, lint. Everything a target needs is installed under .cache/.
SHELL := /bin/bash
GO ?= go
CACHE := $(CURDIR)/.cache
ifeq ($(origin VERSION),undefined)
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
endif
LDFLAGS := -s -w -X main.version=$(VERSION)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)

.PHONY: build build-all build-plugin build-plugin-all test e2e e2e-kubelet demo lint fuzz bench controlplane kubelet-node up down clean

build: ## the shipped binary, linux/amd64 static: bin/koordinator
	GOOS=linux GOARCH=amd64 $(GOBUILD) -o bin/koordinator ./cmd/koordinator

build-all: ## linux/amd64 and linux/arm64
	GOOS=linux GOARCH=amd64 $(GOBUILD) -o bin/koordinator-linux-amd64 ./cmd/koordinator
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/koordinator-linux-arm64 ./cmd/koordinator

# The kubectl plugin is a binary of its own so that nothing of it links into the wrapper.
build-plugin: ## the kubectl plugin for this machine: bin/kubectl-koordinator (put it on PATH: kubectl koordinator ...)
	$(GOBUILD) -o bin/kubectl-koordinator ./cmd/kubectl-koordinator

PLUGIN_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
build-plugin-all: ## the kubectl plugin for every platform a krew manifest will list: bin/kubectl-koordinator-OS-ARCH[.exe]
	@set -e; for p in $(PLUGIN_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "GOOS=$$os GOARCH=$$arch ... -o bin/kubectl-koordinator-$$os-$$arch$$ext"; \
		GOOS=$$os GOARCH=$$arch $(GOBUILD) -o bin/kubectl-koordinator-$$os-$$arch$$ext ./cmd/kubectl-koordinator; done

IMAGE_TAR ?= bin/koordinator-image.tar
.PHONY: image
image: build-all ## the Dockerfile's image without an engine, linux/amd64+arm64: bin/koordinator-image.tar (OCI layout + docker manifest.json)
	$(GO) run ./hack/image -amd64 bin/koordinator-linux-amd64 -arm64 bin/koordinator-linux-arm64 \
		-tag koordinator:$(VERSION) -o $(IMAGE_TAR)

# Checked before anything is built.
ifneq ($(filter push,$(MAKECMDGOALS)),)
ifeq ($(IMAGE),)
$(error usage: make push IMAGE=registry.example.com/team/koordinator:v0.1.0)
endif
endif
.PHONY: push
push: image ## push the multi-arch image to IMAGE=REGISTRY/REPOSITORY:TAG with your docker login; prints its digest
	$(GO) run ./hack/push -i $(IMAGE_TAR) $(IMAGE)

# A release is made from an explicit version, checked before anything is built.
ifneq ($(filter release,$(MAKECMDGOALS)),)
ifeq ($(shell echo '$(VERSION)' | grep -Ex 'v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?'),)
$(error usage: make release VERSION=vX.Y.Z (got VERSION=$(VERSION)))
endif
endif
RELEASE_IMAGE := ghcr.io/koordinator-dev/koordinator
# Every timestamp in the image tarball: the commit's time, so a release of one commit is reproducible.
RELEASE_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
.PHONY: release
release: ## dist/: static binaries (linux amd64/arm64, the plugin for every platform and its krew archives), the image tarball, deploy/ pinned by digest, SHA256SUMS; reproducible
	rm -rf dist && mkdir -p dist
	@set -e; for arch in amd64 arm64; do \
		echo "GOOS=linux GOARCH=$$arch ... -o dist/koordinator-linux-$$arch"; \
		GOOS=linux GOARCH=$$arch $(GOBUILD) -o dist/koordinator-linux-$$arch ./cmd/koordinator; done
	@set -e; for p in $(PLUGIN_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "GOOS=$$os GOARCH=$$arch ... -o dist/kubectl-koordinator-$$os-$$arch$$ext"; \
		GOOS=$$os GOARCH=$$arch $(GOBUILD) -o dist/kubectl-koordinator-$$os-$$arch$$ext ./cmd/kubectl-koordinator; done
	SOURCE_DATE_EPOCH=$(RELEASE_EPOCH) $(GO) run ./hack/image -amd64 dist/koordinator-linux-amd64 -arm64 dist/koordinator-linux-arm64 \
		-tag $(RELEASE_IMAGE):$(VERSION) -o dist/koordinator-image.tar
	$(GO) run ./hack/release -dist dist -deploy deploy

# The real test node (kubelet + containerd + runc) needs root; without it the e2e scenarios run on
# the process node only and the real-node pass is reported skipped, with the reason.
ROOT_USER := $(filter 0,$(shell id -u))

# -count=1: the end-to-end packages build the binary themselves, which go test's cache cannot see.
test: controlplane $(if $(ROOT_USER),kubelet-node) ## every test, with the race detector (end-to-end ones on the process node, and as root on a real kubelet too)
	@[ -n "$(ROOT_USER)" ] || echo "make test: not root: the e2e scenarios run on the process node only; the real-node pass (kubelet + containerd + runc) is skipped"
	$(GO) test -race -count=1 -timeout 60m ./...

e2e: controlplane $(if $(ROOT_USER),kubelet-node) ## only the end-to-end scenarios, verbose, on both nodes
	$(GO) test -race -count=1 -timeout 60m -v ./test/e2e

e2e-kubelet: controlplane kubelet-node ## only the end-to-end scenarios on the real kubelet + containerd + runc (root)
	$(GO) test -race -count=1 -timeout 60m -v ./test/e2e -args -node=kubelet

# KUBELET=1: on the real kubelet + containerd + runc (root).
demo: build controlplane $(if $(KUBELET),kubelet-node) ## deploy/job-example.yaml on a local control plane and node, with a timeline (KUBELET=1: a real kubelet, root)
	$(GO) run ./test/demo -koordinator bin/koordinator $(if $(KUBELET),-kubelet)

lint: $(STATICCHECK) ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

$(STATICCHECK):
	mkdir -p $(CACHE)/tools
	GOBIN=$(CACHE)/tools/tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(CACHE)/tools/tmp/staticcheck $@ && rmdir $(CACHE)/tools/tmp

fuzz: ## a minute of fuzzing the spec parser
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./internal/spec

bench: build controlplane $(if $(ROOT_USER),kubelet-node) ## start-up, stop-reaction, cold-start and idle-cost figures; as root, the example Job beside a native sidecar on a real kubelet (see docs/performance.md)
	bash hack/bench-startup.sh
	bash hack/bench-reaction.sh
	bash hack/bench-plugin.sh
	bash hack/bench-kubelet.sh

controlplane: ## build the local control plane once (~11 min on 2 cores), cached in .cache/controlplane
	bash hack/build-control-plane.sh

kubelet-node: controlplane ## build the real test node once (kubelet, containerd, runc, CNI plugins, pause; ~5 min after the control plane), cached in .cache/kubelet-node
	bash hack/build-kubelet-node.sh

up: controlplane ## start a local control plane in the background; prints export KUBECONFIG=...
	$(GO) build -o $(CACHE)/bin/controlplane ./test/testenv/cmd/controlplane
	$(CACHE)/bin/controlplane up

down: ## stop it; nothing left running
	$(GO) run ./test/testenv/cmd/controlplane down

clean: ## remove bin/ and dist/
	rm -rf bin dist
