# Weft: the two commands a newcomer needs are `make demo` and `make test`.
# Every target that needs system packages depends on `deps`, which installs
# them from Debian's archive once and is quiet afterwards.

SHELL       := /bin/bash
GO          ?= go
OUT         ?= $(CURDIR)/out
BIN         := $(OUT)/bin/weft
IMAGE_DIR   ?= $(OUT)/image
# Caches kept outside the clone: the extracted kernel subset, apt downloads.
WEFT_CACHE  ?= $(HOME)/.cache/weft
export WEFT_CACHE

# Debian packages the build, the tests and the demo use.
APT_PACKAGES := qemu-system-x86 ipxe-qemu xorriso dosfstools mtools iproute2 iperf3 iputils-ping \
                frr bird2 gobgpd isc-dhcp-client udhcpc chromium \
                tcpdump ca-certificates xz-utils zstd cpio stress-ng containerd runc containernetworking-plugins

GOFLAGS_STATIC := -trimpath -buildvcs=false -ldflags='-s -w'

.PHONY: all deps openstack-deps ironic-deps kube-bins cnitool build image test test-stress check unit bench demo fuzz vet clean proto bpf

all: build

deps:
	@.ci/deps $(APT_PACKAGES)
	@$(GO) mod download

# Keystone and Neutron for the OpenStack tests (~4 min once; debconf
# preseeded so that the packages configure no database and start nothing).
openstack-deps:
	@.ci/openstack-deps

ironic-deps:
	@.ci/ironic-deps

# cnitool, the CNI project's reference tool, at the CNI library's version
# (go.mod), built from the module proxy once into the cache: the CNI tests
# drive `weft cni` with it as an operator would.
CNITOOL_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/containernetworking/cni 2>/dev/null)
CNITOOL := $(WEFT_CACHE)/tools/cnitool-$(CNITOOL_VERSION)
cnitool: $(CNITOOL)
$(CNITOOL):
	@mkdir -p $(dir $@)
	@echo "cnitool: building $(CNITOOL_VERSION) from the module proxy (once)"
	@GOBIN=$(WEFT_CACHE)/tools/.bin $(GO) install github.com/containernetworking/cni/cnitool@$(CNITOOL_VERSION)
	@mv $(WEFT_CACHE)/tools/.bin/cnitool $@

# The pinned Kubernetes control plane the Kubernetes tests run (kube-apiserver,
# kube-controller-manager, kubelet, etcd), built from the module proxy by a
# tools module of its own (internal/testrig/kube/tools) into
# $(WEFT_CACHE)/kube/<pin>; ~10-15 min once, then cached by a stamp.
kube-bins:
	@internal/testrig/kube/tools/build.sh

build:
	@mkdir -p $(dir $(BIN))
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_STATIC) -o $(BIN) ./cmd/weft

image: deps build
	$(BIN) image build --out $(IMAGE_DIR) --cache $(WEFT_CACHE)

# Unit tests, integration tests in network namespaces (root) and the QEMU
# end-to-end tests against the image just built.
TEST_ALL = WEFT_IMAGE=$(IMAGE_DIR) WEFT_BIN=$(BIN) WEFT_CNITOOL=$(CNITOOL) $(GO) test -count=1 -timeout 40m ./...
test: deps openstack-deps ironic-deps kube-bins cnitool check image
	$(TEST_ALL)

# make test-stress [RUNS=5]: the whole suite RUNS times in a row with
# `stress-ng --cpu 2` loading the machine beside it; stops at the first
# failure (a flake is a bug) and prints each run's time.
RUNS ?= 5
test-stress: deps openstack-deps ironic-deps kube-bins cnitool check image
	@stress-ng --cpu 2 --quiet & sp=$$!; trap "kill $$sp" EXIT; \
	for i in $$(seq $(RUNS)); do \
	  s=$$(date +%s); echo "test-stress: run $$i of $(RUNS) beside stress-ng --cpu 2"; \
	  $(TEST_ALL) || { echo "test-stress: run $$i failed"; exit 1; }; \
	  echo "test-stress: run $$i passed in $$(( $$(date +%s) - s )) s"; \
	done

unit:
	$(GO) test -short ./...

bench: deps image
	WEFT_IMAGE=$(IMAGE_DIR) WEFT_BIN=$(BIN) $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m ./...

# make demo [NODES=3] [PXE=1] [KEEP=1]
NODES ?= 3
demo: deps image
	$(BIN) qemu demo --image $(IMAGE_DIR) --nodes $(NODES) $(if $(PXE),--pxe) $(if $(KEEP),--keep)

# Short fuzzing pass over every fuzz target (FUZZTIME per target).
FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

vet:
	$(GO) vet ./...

# The gates every change passes before the tests run: go.mod tidy, go vet,
# gofmt, and no function that no command or test reaches (deadcode, pinned,
# built once into the cache outside the clone). The import rules are a test:
# cmd/weft/layering_test.go.
DEADCODE_VERSION := v0.52.0
DEADCODE := $(WEFT_CACHE)/tools/deadcode-$(DEADCODE_VERSION)
$(DEADCODE):
	@mkdir -p $(dir $@)
	@echo "check: building deadcode $(DEADCODE_VERSION) (once)"
	@GOBIN=$(WEFT_CACHE)/tools/.bin $(GO) install golang.org/x/tools/cmd/deadcode@$(DEADCODE_VERSION)
	@mv $(WEFT_CACHE)/tools/.bin/deadcode $@

check: $(DEADCODE)
	@echo "check: go mod tidy -diff, go vet, gofmt, deadcode"
	@$(GO) mod tidy -diff >/dev/null || { echo "check: go.mod/go.sum are not tidy; run 'go mod tidy' (go mod tidy -diff shows what changes)"; exit 1; }
	@$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); [ -z "$$out" ] || { echo "check: not gofmt'ed (run gofmt -w):"; echo "$$out"; exit 1; }
	@out=$$($(DEADCODE) -test ./...); [ -z "$$out" ] || { echo "check: functions no command or test reaches (delete them, or call them):"; echo "$$out"; exit 1; }

clean:
	rm -rf $(OUT)

# Regenerates the vRouter control API's Go code from its .proto (the
# generated files are committed; only this target needs protoc).
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
proto:
	@.ci/deps protobuf-compiler
	@mkdir -p $(OUT)/tools
	GOBIN=$(OUT)/tools $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(OUT)/tools $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(OUT)/tools:$$PATH protoc -I vrouter/api/v1 \
	  --go_out=paths=source_relative:vrouter/api/v1 \
	  --go-grpc_out=paths=source_relative:vrouter/api/v1 vrouter/api/v1/vrouter.proto

# Regenerates the vRouter fast path's BPF objects and their Go bindings
# (bpf2go; committed, so only this target needs clang and libbpf's headers).
bpf:
	@.ci/deps clang llvm libbpf-dev
	cd vrouter/fastpath && $(GO) generate ./...
