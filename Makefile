# SPDX-License-Identifier: GPL-2.0
#
# kvm-vpmu top level.  Kbuild reads ./Kbuild, not this file.
#
#   make check        host tests, both kernels' builds, VM tests (what CI runs)
#   make demo         build what is missing, boot the VM on $KVER (7.3 by
#                     default, KVER=6.12 for the LTS), print the results
#   make KDIR=<tree>  build kvm_vpmu.ko out of tree against a patched tree

ifneq ($(KDIR),)
# The sources as staged for KDIR's kernel (compat/<version>.patch), in out/.
kdir_version := $(shell $(MAKE) -s --no-print-directory -C $(KDIR) kernelversion | cut -d. -f1,2)
oot := $(CURDIR)/out/kvm_vpmu-$(kdir_version)
modules:
	python3 scripts/series.py stage $(kdir_version) $(oot)
	$(MAKE) -C $(KDIR) M=$(oot) CONFIG_KVM_VPMU=m modules
	@echo "kvm_vpmu.ko: $(oot)/kvm_vpmu.ko"
clean:
	rm -rf $(oot)
else

.PHONY: setup host-test bench fuzz kernel kernel-check vm-test check demo lint lint-series

setup:
	scripts/setup.sh

# The model's tests, and the mutants that its property tests must kill.
host-test:
	cargo test --release
	scripts/mutants.sh

bench:
	cargo bench --bench replay

# A long property-test run over the model (not part of check).
fuzz:
	PROPTEST_CASES=$${PROPTEST_CASES:-300000} cargo test --release --test model_props

# Both host kernels: 6.12 first, whose tree also builds the KVM selftests
# that both run, then 7.3.
kernel: setup
	KVER=6.12 scripts/kernel.sh
	KVER=7.3 scripts/kernel.sh

# What make check boots: 6.12 (whose tree also builds the selftests),
# 7.3's debug build (kernel/debug.config: KASAN, lockdep, kmemleak), which
# runs 7.3's full suite and the robustness suite, and 7.3's GCC build for
# the Intel suite under Bochs, where the KASAN build had not left early
# boot after 9 minutes.
kernel-check: setup
	KVER=6.12 scripts/kernel.sh
	KVER=7.3 scripts/kernel.sh --debug
	KVER=7.3 scripts/kernel.sh

vm-test: kernel-check
	scripts/vm-test.sh

lint: kernel-check
	KVER=6.12 scripts/lint.sh
	KVER=7.3 scripts/lint.sh --debug

# Every prefix of the patch series of $KVER (7.3 by default) applies with
# git am and builds.
lint-series: kernel
	scripts/lint-series.sh

check: setup host-test bench kernel-check lint vm-test

demo: kernel
	scripts/demo.sh
endif
