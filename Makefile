# SPDX-License-Identifier: GPL-2.0
#
# kvm-vpmu top level.  Kbuild reads ./Kbuild, not this file.
#
#   make check        host tests, kernel build, VM tests (what CI runs)
#   make demo         build what is missing, boot the VM, print the results
#   make KDIR=<tree>  build kvm_vpmu.ko out of tree against a patched tree

ifneq ($(KDIR),)
modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) CONFIG_KVM_VPMU=m modules
clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean
else

.PHONY: setup host-test bench fuzz kernel kernel-debug vm-test check demo lint lint-series

setup:
	scripts/setup.sh

host-test:
	cargo test --release

bench:
	cargo bench --bench replay

# A long property-test run over the model (not part of check).
fuzz:
	PROPTEST_CASES=$${PROPTEST_CASES:-300000} cargo test --release --test model_props

kernel: setup
	scripts/kernel.sh

kernel-debug: kernel
	scripts/kernel.sh --debug

vm-test: kernel kernel-debug
	scripts/vm-test.sh

lint:
	scripts/lint.sh

# Every prefix of the patch series applies with git am and builds.
lint-series: kernel
	scripts/lint-series.sh

check: setup host-test bench kernel lint vm-test

demo: kernel
	scripts/demo.sh
endif
