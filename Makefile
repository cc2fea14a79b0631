# vfslab: `make run` and `make test` do all the set-up on a fresh Debian machine (as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= out
# make run FULL=1: each scenario's own budget (default: the quick run)
FULL ?=
# make run JOBS=N: the run's N shards side by side (default: one per core; a mount waits on its daemon as often
# as on the CPU)
JOBS ?= $(shell nproc)
APT_PACKAGES := fuse3 fuse-overlayfs unionfs-fuse attr erofs-utils squashfs-tools chromium
# Debian's vmware-vmblock-fuse, unpacked from open-vm-tools (not installed: no VMware services start)
VMBLOCK_CACHE := /var/cache/vfslab/open-vm-tools
VMWARE_VMBLOCK := $(VMBLOCK_CACHE)/usr/bin/vmware-vmblock-fuse
# libfuse 3.17 for our low-level daemons (O_TMPFILE needs its tmpfile request; Debian 12 has 3.14), built from
# Debian's source tarball, checked by the digest trixie's Sources index gives; installed nowhere but here
LIBFUSE_VERSION := 3.17.2
LIBFUSE_SHA256 := 3d932431ad94e86179e5265cddde1d67aa3bb2fb09a5bd35c641f86f2b5ed06f
# our build's revision, in its folder's name so that a machine with an older build makes this one. vfslab1: where
# /etc/mtab is a symlink (the kernel's own table), built with IGNORE_MTAB, else libfuse runs `mount -f` to record
# every mount there and `umount` to take it out (a fork and exec each: 3-4 ms of every mount a check makes)
LIBFUSE_BUILD := $(LIBFUSE_VERSION)+vfslab1
LIBFUSE_CACHE := /var/cache/vfslab/libfuse-$(LIBFUSE_BUILD)
LIBFUSE := $(LIBFUSE_CACHE)/lib/x86_64-linux-gnu/libfuse3.so.4

.PHONY: run test bench mutants lint deps install-helpers vmware-vmblock libfuse clean

run: $(VENV)/.installed deps install-helpers vmware-vmblock libfuse
	$(BIN)/vfslab run --out $(OUT) --jobs $(JOBS) $(if $(FULL),--full)
	@echo "results: $(OUT)/results.json (reports: $(OUT)/report.md, $(OUT)/report.html)"

test: $(VENV)/.installed deps install-helpers vmware-vmblock libfuse
	$(BIN)/python -m pytest

bench: $(VENV)/.installed deps install-helpers libfuse
	$(BIN)/python bench/bench_union.py
	$(BIN)/python bench/bench_union_fs.py
	$(BIN)/python bench/bench_vmblock.py
	$(BIN)/python bench/bench_sim.py
	$(BIN)/python bench/bench_pmem.py

# make mutants (not part of make test): mutation testing of impl/, each mutant judged by vfslab run on its area's
# scenarios, in a copy of this checkout's HEAD (docs/mutants.md); out/mutants/report.md has the kill rates
MUTANTS_SEED ?= 0
MUTANTS_SAMPLE ?= 10
MUTANTS_BUDGET ?= 300
mutants: $(VENV)/.installed deps install-helpers vmware-vmblock libfuse
	$(BIN)/python bench/mutants.py --seed $(MUTANTS_SEED) --sample $(MUTANTS_SAMPLE) --budget $(MUTANTS_BUDGET) \
	  --out $(OUT)/mutants

lint: $(VENV)/.installed
	$(BIN)/ruff check .

# System packages: the FUSE runtime and the external subjects, installed when missing and we are root.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not root: cannot install$$missing; subjects needing them will be reported unavailable"; fi; \
	fi

# union-fuse the system way: mount.fuse3 runs `vfslab-union` with no PATH (so it must be on the default one),
# and mount(8) looks for /sbin/mount.fuse.vfslab-union first; the pmemfile tools by the seed's names. Links
# into this checkout's venv, made as root.
install-helpers: $(VENV)/.installed
	@if [ "$$(id -u)" = 0 ]; then \
	  ln -sf "$(abspath $(BIN))/vfslab-union" /usr/local/bin/vfslab-union; \
	  ln -sf "$(abspath $(BIN))/vfslab-union" /sbin/mount.fuse.vfslab-union; \
	  for t in vfslab-pmem mkfs.pmemfile pmemfile-ls pmemfile-cat pmemfile-stat; do \
	    ln -sf "$(abspath $(BIN))/$$t" /usr/local/bin/$$t; done; \
	else echo "not root: vfslab-union not installed for mount -t fuse.vfslab-union"; fi

vmware-vmblock: $(VMWARE_VMBLOCK)

$(VMWARE_VMBLOCK):
	@if [ "$$(id -u)" = 0 ]; then \
	  tmp=$$(mktemp -d) && cd $$tmp && \
	  { apt-get download open-vm-tools >/dev/null 2>&1 || \
	    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get download open-vm-tools >/dev/null; }; } && \
	  mkdir -p $(VMBLOCK_CACHE) && dpkg -x open-vm-tools_*.deb $(VMBLOCK_CACHE) && cd / && rm -rf $$tmp; \
	else echo "not root: vmware-vmblock-fuse not fetched; its tests will say so"; fi

libfuse: $(LIBFUSE)

$(LIBFUSE):
	@if [ "$$(id -u)" = 0 ]; then \
	  for p in meson ninja-build gcc libc6-dev pkg-config; do dpkg -s $$p >/dev/null 2>&1 || \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$p >/dev/null; done; \
	  tmp=$$(mktemp -d) && cd $$tmp && \
	  $(PYTHON) -c 'import sys, urllib.request; urllib.request.urlretrieve(*sys.argv[1:])' \
	    https://deb.debian.org/debian/pool/main/f/fuse3/fuse3_$(LIBFUSE_VERSION).orig.tar.gz fuse3.tar.gz && \
	  echo "$(LIBFUSE_SHA256)  fuse3.tar.gz" | sha256sum -c --quiet && tar xzf fuse3.tar.gz && \
	  cd fuse-$(LIBFUSE_VERSION) && \
	  meson setup build --prefix=$(LIBFUSE_CACHE) -Dutils=false -Dexamples=false -Dtests=false \
	    -Duseroot=false -Dinitscriptdir= $$([ -L /etc/mtab ] && echo -Dc_args=-DIGNORE_MTAB) >/dev/null && \
	  ninja -C build >/dev/null && ninja -C build install >/dev/null && cd / && rm -rf $$tmp; \
	else echo "not root: libfuse $(LIBFUSE_VERSION) not built; union-fuse serves no O_TMPFILE"; fi

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { [ "$$(id -u)" = 0 ] && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# setuptools tells every editable install, as a warning, to mind same-named folders: ours is the package
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
