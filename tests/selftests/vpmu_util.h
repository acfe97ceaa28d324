/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the kvm_vpmu kselftests share on the host side: the module's
 * parameters in sysfs and its statistics in debugfs.
 */
#ifndef SELFTEST_KVM_VPMU_UTIL_H
#define SELFTEST_KVM_VPMU_UTIL_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

#define PARAM_DIR	"/sys/module/kvm_vpmu/parameters/"
#define STATS_DIR	"/sys/kernel/debug/kvm_vpmu/"

#ifndef APIC_LVTPC
#define APIC_LVTPC	0x340
#endif

/* Writes `val` to `path`; returns whether the write was accepted. */
static inline bool try_write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	bool ok;

	TEST_ASSERT(fd >= 0, "open %s", path);
	ok = write(fd, val, strlen(val)) == (ssize_t)strlen(val);
	close(fd);
	return ok;
}

static inline void write_file(const char *path, const char *val)
{
	TEST_ASSERT(try_write_file(path, val), "write '%s' to %s", val, path);
}

/* A kvm_vpmu statistic from debugfs. */
static inline uint64_t read_stat(const char *name)
{
	char path[128], buf[32] = {};
	int fd;

	snprintf(path, sizeof(path), STATS_DIR "%s", name);
	fd = open(path, O_RDONLY);
	TEST_ASSERT(fd >= 0, "open %s", path);
	TEST_ASSERT(read(fd, buf, sizeof(buf) - 1) > 0, "read %s", path);
	close(fd);
	return strtoull(buf, NULL, 10);
}

/*
 * Whether costs are exact: the test VM runs on an emulator whose time
 * follows instructions executed (QEMU -icount, Bochs), and vm-test.sh
 * says so (VPMU_EXACT=1).  Only then may a test hold a cost to a bound.
 */
static inline bool exact_costs(void)
{
	const char *exact = getenv("VPMU_EXACT");

	return exact && !strcmp(exact, "1");
}

/* Whether KVM gives guests fixed counters: Intel only. */
static inline bool has_fixed_counters(void)
{
	return host_cpu_is_intel && kvm_cpu_property(X86_PROPERTY_PMU_NR_FIXED_COUNTERS);
}

/*
 * Runs `vcpu` until its next ucall, which must be `cmd`; a guest assertion
 * is reported as such, anything else with the vCPU's exit reason.
 */
static inline void vcpu_run_until(struct kvm_vcpu *vcpu, uint64_t cmd)
{
	struct ucall uc;

	vcpu_run(vcpu);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT(uc.cmd == cmd, "vCPU exit: %s, ucall %lu",
		    exit_reason_str(vcpu->run->exit_reason), uc.cmd);
}

/*
 * Fault injection of guest event creates (kvm_vpmu/fail_create/, the
 * kernel's fault_attr): every `nth` create fails, silently; NULL turns it
 * off.
 */
static inline void fail_every_nth_create(const char *nth)
{
	write_file(STATS_DIR "fail_create/verbose", "0");
	write_file(STATS_DIR "fail_create/times", "-1");
	write_file(STATS_DIR "fail_create/interval", nth ? nth : "1");
	write_file(STATS_DIR "fail_create/probability", nth ? "100" : "0");
}

#endif /* SELFTEST_KVM_VPMU_UTIL_H */
