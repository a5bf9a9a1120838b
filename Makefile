# sr: save/restore for KVM virtual machines.
#   make            build libraries and tools into $(O)/
#   make check      unit tests, then the KVM tests (natively or in the box)
#   make asan       the same unit tests built with ASan + UBSan
#   make tsan       unit tests and the native threaded paths under ThreadSanitizer
#   make mutants    hand-chosen mutants of the core files, each against its tests
#   make bench-libsr  stream encoder throughput against memcpy()/write()
#   make bench-peer   sr against QEMU on the same Linux guest, in one run
#   make bench-disk   the guest's virtio disk throughput, sr against QEMU
#   make check-rootfs the Linux guest's root disk on QEMU's virtio-blk (box)
#   make bench-tls    one guest migrated over plaintext, kTLS and user-space TLS, in one run
#   make bench-transport  the migration stream's transport natively (no guest): plaintext vs TLS
#   make fuzz         libFuzzer on the reader and on restore (an hour each)
#   make soak | faults | faults-migrate | converge | downtime | sr-bench | demo   (real KVM: native or the box)
#   make install PREFIX=/usr/local DESTDIR=      make uninstall (the same PREFIX, DESTDIR)
# V=1 shows commands, WERROR=0 keeps warnings as warnings.

VERSION   := 0.1.0
O         ?= build
PREFIX    ?= /usr/local
DESTDIR   ?=
CC        ?= gcc
WERROR    ?= 1
SAN       ?= 0

PKGS      := libxxhash liblz4
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(shell pkg-config --cflags libseccomp 2>/dev/null)
PKG_LIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lxxhash -llz4) -lpthread
CRIT_LIBS := $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)
# GnuTLS for migration's TLS (tools/tls.c): the tools that open tcp: streams.
TLS_CFLAGS := $(shell pkg-config --cflags gnutls 2>/dev/null)
TLS_LIBS  := $(shell pkg-config --libs gnutls 2>/dev/null || echo -lgnutls)
# JSON (sr-ctl's --json); Debian's libjansson-dev.
JSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JSON_LIBS := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
# sr-restore's sandbox only (tools/sandbox.c); no library links it.
SECCOMP_LIBS := $(shell pkg-config --libs libseccomp 2>/dev/null || echo -lseccomp)

WARNINGS  := -Wall -Wextra -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes \
             -Wold-style-definition -Wundef -Wwrite-strings -Wvla -Wshadow
ifeq ($(WERROR),1)
WARNINGS  += -Werror
endif
CFLAGS    ?= -O2 -g
ALL_CFLAGS := -std=gnu11 $(WARNINGS) $(CFLAGS) -fPIC -D_GNU_SOURCE -Ilibsr -Ixc -Ihvmctx -Ihw -Iguest -Itools \
              $(PKG_CFLAGS) $(TLS_CFLAGS) $(JSON_CFLAGS) -MMD -MP
# The tools in $(O) are the ones the tests run: they honour the test hooks
# (sr-ctl poke, SR_MIGRATE_TEST_*, SR_TEST_PAUSE_AT, SR_SAVE_COMMIT_DELAY_MS).
# make install installs a build without them, $(O)/release.
TEST_HOOKS ?= 1
ifeq ($(TEST_HOOKS),1)
ALL_CFLAGS += -DSR_TEST_HOOKS
endif
ifeq ($(SAN),1)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDSAN     := -fsanitize=address,undefined
endif
ifeq ($(SAN),thread)
ALL_CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDSAN     := -fsanitize=thread
endif
LDFLAGS   ?=

ifeq ($(V),1)
Q :=
E := @true
else
Q := @
E := @echo
endif

LIBSR_SRCS := libsr/format.c libsr/writer.c libsr/reader.c libsr/batch.c libsr/gen.c libsr/pool.c libsr/pipe.c libsr/device.c libsr/disk.c
LIBSR_OBJS := $(LIBSR_SRCS:%.c=$(O)/%.o)
LIBSR_SONAME := libsr.so.0
XC_SRCS   := xc/error.c xc/domain.c xc/vcpu.c xc/dirty.c xc/boot.c xc/linux.c xc/probe.c
XC_OBJS   := $(XC_SRCS:%.c=$(O)/%.o)
HVMCTX_SRCS := hvmctx/vcpu.c hvmctx/vm.c hvmctx/save.c hvmctx/restore.c hvmctx/cpu.c hvmctx/time.c
HVMCTX_OBJS := $(HVMCTX_SRCS:%.c=$(O)/%.o)
# Device models: the bus, PCI, the virtio transport and its devices.
HW_SRCS   := hw/bus.c hw/pci.c hw/virtq.c hw/virtio_pci.c hw/virtio_blk.c hw/blk_opts.c hw/virtio_rng.c
HW_OBJS   := $(HW_SRCS:%.c=$(O)/%.o)
RUNNER_OBJS := $(O)/tools/runner.o $(O)/tools/runner_save.o $(O)/tools/detach.o $(O)/tools/serial8250.o $(O)/tools/console.o \
               $(O)/tools/ctl.o $(O)/tools/util.o $(O)/tools/host.o $(O)/tools/migrate.o $(O)/tools/net.o \
               $(O)/tools/imgfile.o $(O)/tools/snapshots.o $(O)/tools/tls.o $(O)/tools/usage.o $(HW_OBJS) $(HVMCTX_OBJS) $(XC_OBJS)

# Freestanding test guests: 64-bit code, no libc, no SSE in compiled C (the
# guest checks its own vector registers), flat binaries loaded at 1 MiB.
GUEST_CFLAGS := -std=gnu11 -O2 -g -ffreestanding -fno-pic -fno-pie -mno-red-zone \
              -mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables \
              -nostdlib -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) -Iguest -Ixc -MMD -MP
GUEST_OBJS := $(O)/guest/boot.o $(O)/guest/lib.o $(O)/guest/main.o
GUEST     := $(O)/guest/sr-test-guest.bin

# The Linux test guest: Debian's kernel (fetched by the box) and an initramfs
# of busybox-static and our workload.
LINUX_KERNEL := build/box/kernel/vmlinuz
LINUX_INITRD := $(O)/guest/linux-initramfs.cpio.gz

TOOLS     := $(O)/sr-dump $(O)/sr-run $(O)/sr-ctl $(O)/sr-save $(O)/sr-migrate $(O)/sr-restore
UNIT_TESTS := $(O)/tests/test-libsr $(O)/tests/test-ctl $(O)/tests/test-disk $(O)/tests/test-hw \
	      $(O)/tests/test-virtio
BENCHES   := $(O)/tests/bench-libsr

all: $(O)/libsr.a $(O)/libsr.so $(O)/sr.pc $(TOOLS) $(GUEST)

$(O)/guest/%.o: guest/%.c
	@mkdir -p $(dir $@)
	$(E) "  CC      $< (guest)"
	$(Q)$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(O)/guest/%.o: guest/%.S
	@mkdir -p $(dir $@)
	$(E) "  AS      $< (guest)"
	$(Q)$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(O)/guest/sr-test-guest.elf: $(GUEST_OBJS) guest/guest.ld
	$(E) "  LD      $@"
	$(Q)ld -nostdlib -static -z noexecstack --no-warn-rwx-segments -T guest/guest.ld -o $@ $(GUEST_OBJS)

$(O)/guest/%.bin: $(O)/guest/%.elf
	$(Q)objcopy -O binary $< $@

WORKLOAD_SRCS := guest/linux/workload.c guest/linux/disk.c guest/linux/diskbench.c
$(O)/guest/linux/sr-workload: $(WORKLOAD_SRCS) guest/linux/workload.h
	@mkdir -p $(dir $@)
	$(E) "  CC      $@ (static)"
	$(Q)$(CC) -O2 -static -pthread -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $(WORKLOAD_SRCS)

# The modules a root on virtio-blk needs, ordered by kmod from the kernel's own
# modules.dep (guest/linux/modules.sh); virtio-rng is the second device type.
LINUX_MODULES := virtio_pci virtio_blk ext4 virtio_rng
$(O)/guest/linux/modules/order: $(LINUX_KERNEL) guest/linux/modules.sh
	$(E) "  MODULES $(LINUX_MODULES)"
	$(Q)scripts/deps.sh box
	$(Q)guest/linux/modules.sh build/box/kernel $(dir $@) $(LINUX_MODULES)

# Two archives in one file, as the kernel allows: the modules uncompressed
# first (a guest without disks does not pay to inflate them), then the rest
# gzipped.  Same inputs, same bytes: fixed timestamps and owners, sorted names.
SOURCE_DATE_EPOCH ?= 1700000000
CPIO_REPRO := cpio -o -H newc -R 0:0 --reproducible 2>/dev/null
$(LINUX_INITRD): $(O)/guest/linux/sr-workload guest/linux/init guest/linux/disktest $(O)/guest/linux/modules/order
	$(E) "  CPIO    $@"
	$(Q)rm -rf $(O)/guest/linux/root $(O)/guest/linux/mods
	$(Q)mkdir -p $(O)/guest/linux/root/bin $(O)/guest/linux/mods/lib
	$(Q)cp /bin/busybox $(O)/guest/linux/sr-workload $(O)/guest/linux/root/bin/
	$(Q)cp guest/linux/init $(O)/guest/linux/root/init
	$(Q)cp guest/linux/disktest $(O)/guest/linux/root/bin/sr-disktest
	$(Q)cp -r $(O)/guest/linux/modules $(O)/guest/linux/mods/lib/modules
	$(Q)find $(O)/guest/linux/root $(O)/guest/linux/mods -exec touch -h -d @$(SOURCE_DATE_EPOCH) {} +
	$(Q)(cd $(O)/guest/linux/mods && find lib | LC_ALL=C sort | $(CPIO_REPRO)) > $@.tmp
	$(Q)(cd $(O)/guest/linux/root && find . | LC_ALL=C sort | $(CPIO_REPRO) | gzip -1 -n) >> $@.tmp
	$(Q)mv $@.tmp $@

# The Linux guest's root disk: an ext4 image of busybox-static and the
# workload, LINUX_ROOT_MIB in size (sparse), made without root privileges and
# the same bytes from the same inputs (guest/rootfs/mkroot.sh).
LINUX_ROOT := $(O)/guest/linux-root.ext4
LINUX_ROOT_MIB ?= 256
$(LINUX_ROOT): $(O)/guest/linux/sr-workload guest/rootfs/init guest/rootfs/mkroot.sh
	$(E) "  MKE2FS  $@"
	$(Q)scripts/deps.sh box
	$(Q)SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) guest/rootfs/mkroot.sh $@ $(LINUX_ROOT_MIB) $(O)/guest/rootfs $<

linux-root: $(LINUX_ROOT) $(LINUX_INITRD)

$(LINUX_KERNEL):
	$(Q)tests/box.sh --prepare

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(E) "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# --version: the tools take VERSION from here (usage.c), libsr/sr.h must agree.
$(O)/tools/usage.o: ALL_CFLAGS += -DSR_VERSION='"$(VERSION)"'
$(O)/tools/usage.o: Makefile
ifneq ($(shell sed -n 's/^\#define SR_LIBRARY_VERSION "\(.*\)"/\1/p' libsr/sr.h),$(VERSION))
$(error VERSION $(VERSION) and libsr/sr.h's SR_LIBRARY_VERSION differ)
endif

$(O)/libsr.a: $(LIBSR_OBJS)
	$(E) "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(O)/libsr.so: $(LIBSR_OBJS)
	$(E) "  LD      $@"
	$(Q)$(CC) -shared -Wl,-soname,$(LIBSR_SONAME) $(LDSAN) -o $@ $^ $(PKG_LIBS)

$(O)/sr.pc: libsr/sr.pc.in
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

$(O)/sr-dump: $(O)/tools/sr-dump.o $(O)/tools/dump_dev.o $(O)/tools/util.o $(O)/tools/usage.o $(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(O)/sr-ctl: $(O)/tools/sr-ctl.o $(O)/tools/ctl.o $(O)/tools/migrate.o $(O)/tools/util.o $(O)/tools/usage.o \
		$(O)/tools/host.o $(XC_OBJS) $(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(JSON_LIBS) -lpthread

$(O)/sr-run: $(O)/tools/sr-run.o $(RUNNER_OBJS) $(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(TLS_LIBS) -lpthread

$(O)/sr-restore: $(O)/tools/sr-restore.o $(O)/tools/sandbox.o $(O)/tools/listener.o $(RUNNER_OBJS) \
		$(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(TLS_LIBS) $(SECCOMP_LIBS) -lpthread

$(O)/sr-save $(O)/sr-migrate: $(O)/sr-%: $(O)/tools/sr-%.o $(O)/tools/save_cli.o $(O)/tools/ctl.o \
		$(O)/tools/migrate.o $(O)/tools/net.o $(O)/tools/tls.o $(O)/tools/util.o $(O)/tools/imgfile.o \
		$(O)/tools/usage.o $(O)/tools/save_json.o $(O)/hw/blk_opts.o
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(TLS_LIBS) $(JSON_LIBS) -lpthread

# The device models' host side, with guest RAM a buffer (the test's own xc stubs).
$(O)/tests/test-hw: $(O)/tests/test_hw.o $(O)/hw/bus.o $(O)/hw/pci.o $(O)/hw/virtq.o $(O)/xc/error.o
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(CRIT_LIBS) -lpthread

# The virtio-pci transport (the test includes hw/virtio_pci.c), KVM's ioctls wrapped to no-ops.
$(O)/tests/test-virtio: $(O)/tests/test_virtio.o $(O)/hw/bus.o $(O)/hw/pci.o $(O)/hw/virtq.o $(O)/xc/error.o \
		$(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -Wl,--wrap=ioctl -o $@ $^ $(PKG_LIBS) $(CRIT_LIBS) -lpthread

$(O)/tests/test-ctl: $(O)/tests/test_ctl.o $(O)/tools/ctl.o $(O)/tools/migrate.o $(O)/tools/util.o \
		$(O)/tools/console.o
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(CRIT_LIBS) -lpthread

$(O)/tests/test-disk: $(O)/tools/snapshots.o

$(O)/tests/test-%: $(O)/tests/test_%.o $(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CRIT_LIBS)

# One end of a migration stream through the tools' transport (tests/bench-transport.sh).
$(O)/tests/bench-transport: $(O)/tests/bench_transport.o $(O)/tools/listener.o $(O)/tools/sandbox.o \
		$(O)/tools/net.o $(O)/tools/tls.o $(O)/tools/util.o
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(TLS_LIBS) $(SECCOMP_LIBS) -lpthread

$(O)/tests/bench-%: $(O)/tests/bench_%.o $(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

.SECONDARY:

# ------------------------------------------------------------------ tests
.PHONY: converge downtime fuzz fuzz-ci soak faults faults-migrate
.PHONY: deps all check check-unit check-tools check-kvm box-shell asan bench-libsr install uninstall release clean demo sr-bench bench-peer bench-tls bench-transport
.PHONY: tsan check-tsan mutants check-devices linux-root bench-disk check-rootfs install-service uninstall-service

check: check-unit check-tools check-kvm

check-unit: $(UNIT_TESTS) $(TOOLS) $(O)/tests/threads
	$(Q)SR_DUMP=$(abspath $(O)/sr-dump) $(O)/tests/test-libsr --jobs 2
	$(Q)$(O)/tests/test-ctl --jobs 2
	$(Q)$(O)/tests/test-disk --jobs 2
	$(Q)$(O)/tests/test-hw --jobs 2
	$(Q)$(O)/tests/test-virtio --jobs 2
	$(Q)$(O)/tests/threads | tail -1

check-tools: $(TOOLS) $(UNIT_TESTS) $(O)/tests/mkimage $(O)/tests/kvm-dirty-log $(O)/tests/noipv6.so $(O)/tests/netflood $(O)/tests/tlspeer $(O)/tests/sandbox-test $(GUEST) release
	$(Q)O=$(O) tests/tools.sh
	$(Q)O=$(O) tests/host.sh
	$(Q)O=$(O) tests/manpages.sh
	$(Q)O=$(O) tests/conventions.sh

KVM_DEPS := $(TOOLS) $(GUEST) $(O)/tests/kvm-dirty-log $(O)/tests/imgedit $(O)/tests/mkimage $(LINUX_INITRD) $(LINUX_KERNEL) $(LINUX_ROOT)

# KVM tests run on real KVM: natively when this host has /dev/kvm, else in
# the nested box.  Neither path skips.
# The suite outgrew the box's default 1200 s bound: an hour for the whole of it.
# The box emulates one CPU: in the box the suite runs as one part per host CPU,
# in boxes side by side (tests/on-kvm.sh, SR_KVM_SHARDS=1 for one box).
check-kvm: $(KVM_DEPS)
	$(Q)SR_KVM_SHARDS=$${SR_KVM_SHARDS:-auto} SR_BOX_TIMEOUT=$${SR_BOX_TIMEOUT:-3600} O=$(O) tests/on-kvm.sh check-kvm tests/kvm.sh

# The virtio device tests, all four; check-kvm runs virtio-disk only (the others
# take minutes each in the box, past CI's budget).
check-devices: $(KVM_DEPS)
	$(Q)SR_KVM_SHARDS=$${SR_KVM_SHARDS:-auto} SR_KVM_TESTS="virtio-disk virtio-disk-save linux-disk linux-disk-save disk-snapshot" SR_BOX_TIMEOUT=$${SR_BOX_TIMEOUT:-3600} \
		O=$(O) tests/on-kvm.sh check-devices tests/kvm.sh

box-shell: $(KVM_DEPS)
	$(Q)tests/box.sh --shell

# The same tests with ASan + UBSan: the unit and tool tests whole, and a
# sample of the KVM tests that reaches every part of xc, hvmctx, libsr and the
# tools on real KVM (guests run, saved cold and live, restored, corrupt and
# placed images, the control socket, two-phase commits, a Linux save, the
# sandbox, a migration over TLS).  The rest of the KVM suite exercises the
# same code for behaviour and time, and runs in make check only: CI's budget
# (ASAN_KVM_TESTS="" runs all of it under the sanitizers).  chain makes 5 of
# its 20 cycles here (SR_CHAIN_CYCLES): the code is the same each cycle.
# migrate-linux and control-socket stay in make check (the slowest here: 160 s
# of 900 in a loaded box): linux-save and migrate-tls reach migrate-linux's code,
# test-ctl and tools.sh the control socket's under the sanitizers.
ASAN_KVM_TESTS ?= guest-2 save-points restore-twice chain corrupt-image placed-restore clock \
	disk-full signal cpu-compat zero-pages old-layout live live-pipe \
	live-failure tsc-deadline linux-save sandbox migrate-tls
asan:
	$(Q)LSAN_OPTIONS="suppressions=$(abspath tests/lsan.supp):$${LSAN_OPTIONS:-}" SR_KVM_TESTS="$(ASAN_KVM_TESTS)" SR_CHAIN_CYCLES=$${SR_CHAIN_CYCLES:-5} $(MAKE) --no-print-directory O=build-asan SAN=1 check-unit check-tools check-kvm

# ThreadSanitizer over the threads that run natively: tests/threads (the save
# pipe with 0-4 workers against batches, the placed reader with 0-3 against the
# buffered one, through a pipe too; Criterion itself cannot start under TSan,
# Criterion issue #274) and bench-libsr's pipe rows (one worker and one per
# CPU) on a small size.  Any report fails the run (halt_on_error, exit 66).
TSAN_OPTIONS ?= halt_on_error=1 exitcode=66 second_deadlock_stack=1
tsan:
	$(Q)$(MAKE) --no-print-directory O=build-tsan SAN=thread check-tsan

check-tsan: $(O)/tests/threads $(BENCHES)
	$(Q)TSAN_OPTIONS="$(TSAN_OPTIONS)" $(O)/tests/threads
	$(Q)TSAN_OPTIONS="$(TSAN_OPTIONS)" $(O)/tests/bench-libsr --gib 0.05 --dir $(O) >$(O)/tsan-bench.out 2>&1 || \
		{ tail -40 $(O)/tsan-bench.out; echo "tsan: bench-libsr failed"; exit 1; }
	$(Q)! grep -q 'ThreadSanitizer' $(O)/tsan-bench.out || { cat $(O)/tsan-bench.out; exit 1; }
	$(E) "tsan: the save pipe and the placed reader's threads, and bench-libsr's pipe rows: no reports"

# Mutation testing: tests/mutants.sh applies each mutant of tests/mutants.tsv in
# a scratch copy of the tree, builds it and runs the tests that cover its file.
mutants:
	$(Q)tests/mutants.sh

BENCH_GIB ?= 1
bench-libsr: $(BENCHES)
	$(Q)$(O)/tests/bench-libsr --gib $(BENCH_GIB) --dir $(O)

# sr against QEMU (-accel kvm) on the same Linux guest, in the same run.
bench-peer: all $(LINUX_INITRD) $(LINUX_KERNEL)
	$(Q)SR_BOX_TIMEOUT=$${SR_BOX_TIMEOUT:-5400} SR_BOX_IDLE=$${SR_BOX_IDLE:-1200} \
		O=$(O) tests/on-kvm.sh bench-peer tests/bench-peer-kvm.sh

# The Linux guest's root disk on QEMU's virtio-blk-pci (tests/disk-qemu-kvm.sh):
# the initramfs reaches it, the disk workload passes, a power cycle and a live
# migration keep every acknowledged write, a removed file is caught.
check-rootfs: all $(LINUX_INITRD) $(LINUX_KERNEL) $(LINUX_ROOT)
	$(Q)O=$(O) tests/on-kvm.sh check-rootfs tests/disk-qemu-kvm.sh

# In-guest throughput of the root disk: QEMU's virtio-blk now, sr's too once
# sr-run has --disk, and the ratio (tests/bench-disk-kvm.sh).
bench-disk: all $(LINUX_INITRD) $(LINUX_KERNEL) $(LINUX_ROOT)
	$(Q)O=$(O) tests/on-kvm.sh bench-disk tests/bench-disk-kvm.sh

# TLS's cost: one guest migrated over plaintext, kTLS and user-space TLS in one run.
bench-tls: all
	$(Q)O=$(O) tests/on-kvm.sh bench-tls tests/bench-tls-kvm.sh

# TLS's cost on this host's CPU, natively: the tools' transport code moving a
# stream over loopback and a veth pair (1 and 10 Gbit/s too), plaintext and TLS.
bench-transport: $(O)/tests/bench-transport
	$(Q)O=$(O) tests/bench-transport.sh

sr-bench: all
	$(Q)scripts/deps.sh bench
	$(Q)O=$(O) tests/on-kvm.sh sr-bench tests/sr-bench-kvm.sh

# Live-save convergence on the demo's workload: 10 saves against the targets.
converge: all $(LINUX_INITRD) $(LINUX_KERNEL)
	$(Q)O=$(O) tests/on-kvm.sh converge tests/converge-kvm.sh

# The live save's downtime by phase, the demo's guest with its devices and without.
downtime: all $(LINUX_INITRD) $(LINUX_KERNEL) $(LINUX_ROOT)
	$(Q)O=$(O) tests/on-kvm.sh downtime tests/downtime-kvm.sh

# Long campaigns on real KVM (CI runs a sample of each inside check-kvm).
soak: all
	$(Q)O=$(O) tests/on-kvm.sh soak tests/soak-kvm.sh

faults: all
	$(Q)O=$(O) tests/on-kvm.sh faults tests/faults-kvm.sh

# 100 migrations between two network namespaces, each hit by a kill, a cancel
# or a cut link at a random moment, every handshake step included.
faults-migrate: all
	$(Q)SR_BOX_TIMEOUT=$${SR_BOX_TIMEOUT:-5400} O=$(O) tests/on-kvm.sh faults-migrate tests/faults-migrate-kvm.sh

demo: deps all $(LINUX_INITRD) $(LINUX_KERNEL) $(LINUX_ROOT)
	$(Q)O=$(O) tests/on-kvm.sh demo tests/demo-kvm.sh

# ------------------------------------------------------------------ fuzz
# libFuzzer (clang) targets, with a structure-aware mutator that re-frames
# mutated records with fresh checksums, seeded from generated images:
#   fuzz-reader   the reader, buffered and placed with 0-3 workers into
#                 memory indexed by pfn: same verdict, same bytes
#   fuzz-restore  restore's record handling up to the xc boundary (fake xc
#                 and KVM, the serial8250 model behind DEVICE), 0-3 workers,
#                 sr-restore's teardown
# make fuzz runs each for FUZZ_SECONDS (an hour); CI runs fuzz-ci (60 s each).
# Seeds: generated images (one to 4 regions, zero runs, one record of 1024
# raw pages, rounds of two records) and tests/fuzz-corpus/TARGET/, inputs
# that found a defect.  -max_len is above one full record of raw pages.
# Either fails on a fuzzer's exit status or any file in crashes-TARGET/.
FUZZ_O      ?= build-fuzz
FUZZ_SECONDS ?= 3600
FUZZ_MAX_LEN := 8388608
FUZZ_TARGETS := reader restore
FUZZ_FLAGS  := -std=gnu11 -g -O1 -Wno-gnu-variable-sized-type-not-at-end -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
               -D_GNU_SOURCE -Ilibsr -Ixc -Ihvmctx -Itools $(PKG_CFLAGS)
FUZZ_RESTORE_SRCS := hvmctx/restore.c hvmctx/vcpu.c hvmctx/vm.c hvmctx/cpu.c hvmctx/time.c \
               tools/serial8250.c xc/error.c

FUZZ_COMMON := tests/fuzz_mutator.c tests/fuzz_input.c

$(FUZZ_O)/fuzz-reader: tests/fuzz_reader.c $(FUZZ_COMMON) tests/fuzz_input.h $(LIBSR_SRCS) libsr/sr.h \
		libsr/sr_format.h libsr/internal.h libsr/pool.h
	@mkdir -p $(FUZZ_O)
	$(Q)scripts/deps.sh fuzz
	$(E) "  CLANG   $@"
	$(Q)clang $(FUZZ_FLAGS) -o $@ tests/fuzz_reader.c $(FUZZ_COMMON) $(LIBSR_SRCS) $(PKG_LIBS)

$(FUZZ_O)/fuzz-restore: tests/fuzz_restore.c $(FUZZ_COMMON) tests/fuzz_input.h $(FUZZ_RESTORE_SRCS) \
		$(LIBSR_SRCS) libsr/sr.h libsr/sr_format.h libsr/internal.h libsr/pool.h hvmctx/hvmctx.h \
		hvmctx/hvmctx_priv.h xc/xc.h tools/serial8250.h tools/restore_teardown.h
	@mkdir -p $(FUZZ_O)
	$(Q)scripts/deps.sh fuzz
	$(E) "  CLANG   $@"
	$(Q)clang $(FUZZ_FLAGS) -Wl,--wrap=ioctl -o $@ tests/fuzz_restore.c $(FUZZ_COMMON) \
		$(FUZZ_RESTORE_SRCS) $(LIBSR_SRCS) $(PKG_LIBS) -lpthread

$(FUZZ_O)/seeds: $(O)/tests/mkimage
	$(Q)rm -rf $@ && mkdir -p $@
	$(Q)for a in "-m 1 -v 1 -i 0" "-m 1 -v 2 -i 2 -d 20" "-m 1 -v 3 -i 3 -d 5 -n" "-m 1 -v 1 -i 1 -d 200 -s 7" "-m 2 -v 1 -i 1 -d 20 -H 60" \
		"-m 1 -v 1 -i 1 -d 30 -r 3 -z 80" "-m 2 -v 2 -i 2 -d 40 -H 40 -r 4 -z 80 -s 3" "-m 4 -v 1 -i 0 -n -z 0" \
		"-m 5 -v 1 -i 1 -d 1100 -r 2 -z 85 -t 5 -s 5" "-m 1 -v 1 -i 0 -H 100 -b 2 -g 1" \
		"-m 2 -v 2 -i 1 -d 3 -H 98 -z 90 -r 2 -b 1 -g 1 -B optional" "-m 1 -v 1 -i 0 -H 100 -b 2 -S"; do \
		$(O)/tests/mkimage $$a $@/seed-$$(echo $$a | tr -d ' -').img || exit 1; done

fuzz fuzz-ci: $(addprefix $(FUZZ_O)/fuzz-,$(FUZZ_TARGETS)) $(FUZZ_O)/seeds
	$(Q)for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_O)/corpus-$$t $(FUZZ_O)/crashes-$$t; \
		echo "fuzz-$$t: $(if $(filter fuzz-ci,$@),60,$(FUZZ_SECONDS)) s"; \
		{ $(FUZZ_O)/fuzz-$$t -max_total_time=$(if $(filter fuzz-ci,$@),60,$(FUZZ_SECONDS)) \
			-max_len=$(FUZZ_MAX_LEN) -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_O)/crashes-$$t/ $(FUZZ_O)/corpus-$$t $(FUZZ_O)/seeds \
			$$(ls -d tests/fuzz-corpus/$$t 2>/dev/null) 2>&1; echo $$? > $(FUZZ_O)/status-$$t; } | \
			grep -E --line-buffered '^(#[0-9]+ +(INITED|pulse|DONE)|==|SUMMARY|stat::|Done|.*ERROR|.*crash|fuzz-)'; \
		st=$$(cat $(FUZZ_O)/status-$$t); \
		test "$$st" = 0 || { echo "fuzz-$$t: the fuzzer exited with status $$st"; exit 1; }; \
		test -z "$$(ls $(FUZZ_O)/crashes-$$t)" || { echo "fuzz-$$t: crashes in $(FUZZ_O)/crashes-$$t"; exit 1; }; \
	done

# ---------------------------------------------------------------- install
# The installed tools: built apart, without the test hooks.
RELEASE_O := $(O)/release
release:
	$(Q)$(MAKE) --no-print-directory O=$(RELEASE_O) TEST_HOOKS=0 \
		$(patsubst $(O)/%,$(RELEASE_O)/%,$(TOOLS))

# systemd: sr@NAME.service runs domain NAME; tmpfiles.d makes /run/sr at boot.
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
install-service:
	install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(TMPFILESDIR)
	sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		scripts/systemd/sr@.service.in > $(DESTDIR)$(SYSTEMDUNITDIR)/sr@.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/sr@.service
	install -m 0644 scripts/systemd/sr.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/sr.conf

uninstall-service:
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/sr@.service $(DESTDIR)$(TMPFILESDIR)/sr.conf

# What install puts where (uninstall removes exactly these).  sr.pc is written
# here, with the PREFIX of this install, not the one of the build.
TOOL_NAMES := $(notdir $(TOOLS))
INSTALLED := $(addprefix bin/,$(TOOL_NAMES)) $(addprefix share/man/man1/,$(TOOL_NAMES:=.1)) \
	     lib/libsr.a lib/libsr.so.$(VERSION) lib/$(LIBSR_SONAME) lib/libsr.so lib/pkgconfig/sr.pc \
	     include/sr/sr.h include/sr/sr_format.h share/doc/sr/LICENSE \
	     $(addprefix share/bash-completion/completions/,sr $(TOOL_NAMES))

install: all release install-service
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
		$(DESTDIR)$(PREFIX)/include/sr $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/doc/sr $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 0755 $(patsubst $(O)/%,$(RELEASE_O)/%,$(TOOLS)) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(O)/libsr.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0755 $(O)/libsr.so $(DESTDIR)$(PREFIX)/lib/libsr.so.$(VERSION)
	ln -sf libsr.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(LIBSR_SONAME)
	ln -sf $(LIBSR_SONAME) $(DESTDIR)$(PREFIX)/lib/libsr.so
	install -m 0644 libsr/sr.h libsr/sr_format.h $(DESTDIR)$(PREFIX)/include/sr/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' libsr/sr.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sr.pc
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/sr.pc
	install -m 0644 LICENSE $(DESTDIR)$(PREFIX)/share/doc/sr/
	install -m 0644 scripts/sr.bash-completion $(DESTDIR)$(PREFIX)/share/bash-completion/completions/sr
	for t in $(TOOL_NAMES); do ln -sf sr $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$t; done
	install -m 0644 docs/sr-dump.1 docs/sr-run.1 docs/sr-save.1 docs/sr-migrate.1 docs/sr-restore.1 docs/sr-ctl.1 \
		$(DESTDIR)$(PREFIX)/share/man/man1/

uninstall: uninstall-service
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED))
	-rmdir $(DESTDIR)$(PREFIX)/include/sr $(DESTDIR)$(PREFIX)/share/doc/sr 2>/dev/null

clean:
	rm -rf build build-asan build-dev build-fuzz build-tsan build-mutants

-include $(shell find $(O) -name '*.d' 2>/dev/null)

$(O)/tests/kvm-dirty-log: $(O)/tests/kvm_dirty_log.o $(XC_OBJS)
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ -lpthread

$(O)/tests/imgedit: $(O)/tests/imgedit.o $(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(O)/tests/threads: $(O)/tests/threads.o $(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# sr-restore's seccomp filters, one thread kind and one call at a time (test-only).
$(O)/tests/sandbox-test: $(O)/tests/sandbox_test.o $(O)/tools/sandbox.o $(O)/tools/util.o
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(SECCOMP_LIBS) -lpthread

$(O)/tests/mkimage: $(O)/tests/mkimage.o $(O)/libsr.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# tools.sh: a connection flood and a slow link for the listener.
$(O)/tests/netflood: tests/netflood.c
	@mkdir -p $(dir $@)
	$(E) "  CC      $@"
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -o $@ $< -lpthread

# tools.sh: a TLS 1.3 PSK source whose wire bytes go out in the shapes it is told (audit9).
$(O)/tests/tlspeer: tests/tlspeer.c
	@mkdir -p $(dir $@)
	$(E) "  CC      $@"
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -o $@ $< $(TLS_LIBS) -lxxhash

# tools.sh: a host without IPv6, for the listener's IPv4 fallback (LD_PRELOAD).
$(O)/tests/noipv6.so: tests/noipv6.c
	@mkdir -p $(dir $@)
	$(E) "  CC      $@"
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -shared -fPIC -o $@ $< -ldl

deps:
	$(Q)scripts/deps.sh all
