/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the kvm_vpmu kselftests share on the host side: the module's
 * parameters in sysfs, KVM's per-vCPU PMU statistics (stats fd), and the
 * module's host-wide gauges and fault injection in debugfs.
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

/* The number a debugfs file holds. */
static inline uint64_t read_u64_file(const char *path)
{
	char buf[32] = {};
	int fd = open(path, O_RDONLY);

	TEST_ASSERT(fd >= 0, "open %s", path);
	TEST_ASSERT(read(fd, buf, sizeof(buf) - 1) > 0, "read %s", path);
	close(fd);
	return strtoull(buf, NULL, 10);
}

/* A kvm_vpmu gauge from debugfs (kept_events, kept_vcpus, kept_max, ...). */
static inline uint64_t read_stat(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), STATS_DIR "%s", name);
	return read_u64_file(path);
}

/*
 * One of KVM's vCPU statistics summed over every live VM of the host
 * (debugfs kvm/).
 */
static inline uint64_t kvm_sum(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/kernel/debug/kvm/%s", name);
	return read_u64_file(path);
}

/* debugfs injected_failures, or 0 on a kernel without fault injection. */
static inline uint64_t injected_failures(void)
{
	return access(STATS_DIR "injected_failures", R_OK) ? 0 : read_stat("injected_failures");
}

/*
 * One of a vCPU's statistics in KVM, by name, through its stats fd
 * (KVM_GET_STATS_FD): what 7.3's vcpu_get_stat() reads, which 6.12's
 * selftest library lacks.
 */
static inline uint64_t vcpu_stat(struct kvm_vcpu *vcpu, const char *name)
{
	struct kvm_stats_header header;
	struct kvm_stats_desc *descs, *desc;
	int fd = vcpu_get_stats_fd(vcpu);
	uint64_t data = 0;
	bool found = false;
	uint32_t i;

	read_stats_header(fd, &header);
	descs = read_stats_descriptors(fd, &header);
	for (i = 0; i < header.num_desc && !found; i++) {
		desc = get_stats_descriptor(descs, i, &header);
		if (!strcmp(desc->name, name)) {
			read_stat_data(fd, &header, desc, &data, 1);
			found = true;
		}
	}
	free(descs);
	close(fd);
	TEST_ASSERT(found, "KVM has no vCPU statistic %s (kernel without patches/?)", name);
	return data;
}

/* A vCPU statistic summed over the VM's vCPUs, as KVM's debugfs sums it. */
static inline uint64_t vm_vcpus_stat(struct kvm_vm *vm, const char *name)
{
	struct kvm_vcpu *vcpu;
	uint64_t sum = 0;

	list_for_each_entry(vcpu, &vm->vcpus, list)
		sum += vcpu_stat(vcpu, name);
	return sum;
}

/*
 * The PMU statistics of one VM, summed over its vCPUs (KVM's names with
 * the pmu_ prefix left off).
 */
struct pmu_stats {
	uint64_t reprograms, creates, create_failures, resumes, releases;
	uint64_t kept, adopted, evicted;
};

static inline struct pmu_stats vm_pmu_stats(struct kvm_vm *vm)
{
	return (struct pmu_stats) {
		.reprograms = vm_vcpus_stat(vm, "pmu_reprograms"),
		.creates = vm_vcpus_stat(vm, "pmu_event_creates"),
		.create_failures = vm_vcpus_stat(vm, "pmu_event_create_failures"),
		.resumes = vm_vcpus_stat(vm, "pmu_event_resumes"),
		.releases = vm_vcpus_stat(vm, "pmu_event_releases"),
		.kept = vm_vcpus_stat(vm, "pmu_events_kept"),
		.adopted = vm_vcpus_stat(vm, "pmu_events_adopted"),
		.evicted = vm_vcpus_stat(vm, "pmu_events_evicted"),
	};
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
