// SPDX-License-Identifier: GPL-2.0
/*
 * A hostile guest against kvm_vpmu: several vCPUs write random and
 * adversarial values to every PMU MSR they have and to those they do not
 * (reserved bits, read-only MSRs, the other vendor's MSRs), as fast as they
 * can, counting the #GPs they take, with LVTPC set to NMI and counters
 * overflowing.  Meanwhile the host flips the module's policy and its
 * enable switch (in soft mode enable=0 must be refused instead, as KVM
 * could not back the counters), and tries to unload and reload the module
 * (refused while the soft PMU or a vCPU it reprogrammed for pins it).
 * The guest must finish, and once the VM is gone no kept event or per-vCPU
 * state may be left; KVM warns if a vCPU leaves an event behind.
 *
 *   vpmu_storm_test [-v vCPUs] <path of kvm_vpmu.ko> [module parameters]
 *
 * The kernel log is judged by the caller (no WARN, BUG, Oops, lockdep).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "apic.h"
#include "kvm_util.h"
#include "pmu.h"
#include "processor.h"
#include "vpmu_util.h"

/* vCPUs of the VM: 4 unless -v says otherwise. */
#define MAX_VCPUS	64
#define WRITES_PER_VCPU	4000
#define FLIP_US		2000
#define RELOAD_EVERY	10	/* flips */

static const uint32_t amd_msrs[] = {
	0xc0010000, 0xc0010001, 0xc0010002, 0xc0010003,	/* K7 EVNTSEL */
	0xc0010004, 0xc0010005, 0xc0010006, 0xc0010007,	/* K7 PERFCTR */
	0xc0010200, 0xc0010201, 0xc0010202, 0xc0010203,	/* F15H CTL/CTR */
	0xc0010204, 0xc0010205, 0xc0010206, 0xc0010207,
	0xc0010208, 0xc0010209, 0xc001020a, 0xc001020b,
	0xc0000300, 0xc0000301, 0xc0000302, 0xc0000303,	/* PerfMonV2 */
};

static const uint32_t intel_msrs[] = {
	0x186, 0x187, 0x188, 0x189, 0x18a, 0x18b, 0x18c, 0x18d,	/* EVNTSEL */
	0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8,		/* PERFCTR */
	0x4c1, 0x4c2, 0x4c3, 0x4c4,				/* PMC */
	0x309, 0x30a, 0x30b,					/* FIXED_CTR */
	0x38d, 0x38e, 0x38f, 0x390, 0x3f1,			/* ctrl, status, PEBS */
};

/* Counts per vCPU, indexed by the vCPU id the host passes in. */
static uint64_t writes[MAX_VCPUS], gps[MAX_VCPUS], other_faults[MAX_VCPUS];
static uint64_t nmis[MAX_VCPUS];

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t adversarial(uint64_t *s)
{
	uint64_t r = xorshift(s);

	switch (r % 8) {
	case 0:
		return 0;
	case 1:
		return ~0ull;
	case 2:		/* an enabled sampling event, sometimes with PMI */
		return (r >> 8 & 0xff) | ARCH_PERFMON_EVENTSEL_USR |
		       ARCH_PERFMON_EVENTSEL_OS | ARCH_PERFMON_EVENTSEL_ENABLE |
		       (r & BIT_ULL(20));
	case 3:		/* just below a wrap */
		return -(r % 4096) - 1;
	case 4:		/* one reserved-looking high bit */
		return BIT_ULL(32 + r % 32);
	case 5:		/* fixed counter fields */
		return r & 0xbbb;
	default:
		return xorshift(s);
	}
}

static void guest_nmi_handler(struct ex_regs *regs)
{
	nmis[x2apic_read_reg(APIC_ID)]++;
	x2apic_write_reg(APIC_LVTPC, APIC_DM_NMI);
}

static void guest_code(uint64_t id)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull * (id + 1);
	const uint32_t *msrs = host_cpu_is_amd ? amd_msrs : intel_msrs;
	size_t nr = host_cpu_is_amd ? ARRAY_SIZE(amd_msrs) : ARRAY_SIZE(intel_msrs);
	const uint32_t *other = host_cpu_is_amd ? intel_msrs : amd_msrs;
	size_t nr_other = host_cpu_is_amd ? ARRAY_SIZE(intel_msrs) : ARRAY_SIZE(amd_msrs);
	uint64_t i, val;

	x2apic_enable();
	x2apic_write_reg(APIC_LVTPC, APIC_DM_NMI);
	for (i = 0; i < WRITES_PER_VCPU; i++) {
		uint64_t r = xorshift(&seed);
		uint32_t msr = r % 16 ? msrs[r % nr] : other[r % nr_other];
		uint8_t vector;

		if (r % 5 == 0)
			vector = rdmsr_safe(msr, &val);
		else
			vector = wrmsr_safe(msr, adversarial(&seed));
		if (vector == GP_VECTOR)
			gps[id]++;
		else if (vector)
			other_faults[id]++;
		writes[id]++;
	}
	GUEST_DONE();
}

static void *vcpu_thread(void *arg)
{
	vcpu_run_until(arg, UCALL_DONE);
	return NULL;
}

/* A bool module parameter's value as the kernel's kstrtobool() reads it. */
static bool param_true(const char *val)
{
	return val[0] == '1' || val[0] == 'y' || val[0] == 'Y' ||
	       ((val[0] == 'o' || val[0] == 'O') && (val[1] == 'n' || val[1] == 'N'));
}

/*
 * Whether kvm_vpmu was loaded with soft=1, from the parameters this test
 * reloads it with, which are those it was loaded with.  `soft` is a
 * load-time parameter and not in sysfs (7.3's module! gives parameters mode
 * 0, and 6.12's shim declares it the same way).
 */
static bool soft_mode(const char *params)
{
	char buf[256], *tok, *save;
	bool soft = false;

	snprintf(buf, sizeof(buf), "%s", params);
	for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		if (!strcmp(tok, "soft"))
			soft = true;
		else if (!strncmp(tok, "soft=", 5))
			soft = param_true(tok + 5);
	}
	return soft;
}

/*
 * Unloads and reloads kvm_vpmu if it can be unloaded; returns whether it
 * was.  It cannot while KVM's vPMU rests on its soft PMU or while a vCPU
 * it reprogrammed for exists: both pin it, and the unload is refused.
 */
static bool try_reload(const char *ko, const char *params)
{
	int fd;

	if (syscall(__NR_delete_module, "kvm_vpmu", O_NONBLOCK)) {
		/* A module in use: delete_module() says EWOULDBLOCK. */
		TEST_ASSERT(errno == EWOULDBLOCK, "unload kvm_vpmu: %s", strerror(errno));
		return false;
	}
	fd = open(ko, O_RDONLY);
	TEST_ASSERT(fd >= 0, "open %s", ko);
	TEST_ASSERT(!syscall(__NR_finit_module, fd, params, 0), "load %s %s", ko, params);
	close(fd);
	return true;
}

int main(int argc, char *argv[])
{
	static const char * const policies[] = { "legacy", "reuse", "cache" };
	struct kvm_vcpu *vcpus[MAX_VCPUS];
	pthread_t threads[MAX_VCPUS];
	unsigned int nr_vcpus = 4;
	uint64_t total_writes = 0, total_gps = 0, total_faults = 0, total_nmis = 0;
	unsigned int flips = 0, reloads = 0, pinned = 0, enable_flips = 0, refusals = 0, running, i;
	bool soft;
	const char *ko, *params;
	int opt;
	struct kvm_vm *vm;
	bool ok;

	while ((opt = getopt(argc, argv, "v:")) != -1) {
		TEST_ASSERT(opt == 'v', "usage: %s [-v vCPUs] <kvm_vpmu.ko> [params]", argv[0]);
		nr_vcpus = strtoul(optarg, NULL, 0);
		TEST_ASSERT(nr_vcpus && nr_vcpus <= MAX_VCPUS, "-v: 1 to %u vCPUs", MAX_VCPUS);
	}
	ko = optind < argc ? argv[optind] : NULL;
	params = optind + 1 < argc ? argv[optind + 1] : "";
	TEST_REQUIRE(ko && access(ko, R_OK) == 0);
	TEST_REQUIRE(access(PARAM_DIR "policy", W_OK) == 0);
	TEST_REQUIRE(kvm_is_pmu_enabled());

	ksft_print_header();
	ksft_set_plan(1);
	soft = soft_mode(params);

	vm = vm_create_with_vcpus(nr_vcpus, guest_code, vcpus);
	vm_install_exception_handler(vm, NMI_VECTOR, guest_nmi_handler);
	for (i = 0; i < nr_vcpus; i++) {
		vcpu_args_set(vcpus[i], 1, i);
		pthread_create(&threads[i], NULL, vcpu_thread, vcpus[i]);
	}

	/* Policy flips and module reloads while the vCPUs run. */
	do {
		struct timespec ts = { 0, FLIP_US * 1000 };

		nanosleep(&ts, NULL);
		/*
		 * From the first flip on: on a slow single-CPU host (Bochs)
		 * the vCPUs finished within three flips, before any reload
		 * was tried.
		 */
		if (++flips % RELOAD_EVERY == 1) {
			if (try_reload(ko, params))
				reloads++;
			else
				pinned++;
		}
		write_file(PARAM_DIR "policy", policies[flips % ARRAY_SIZE(policies)]);
		if (flips % 3 == 0) {
			/* Off for a moment, then on again. */
			if (try_write_file(PARAM_DIR "enable", "0")) {
				enable_flips++;
				nanosleep(&ts, NULL);
			} else {
				refusals++;
			}
			write_file(PARAM_DIR "enable", "1");
		}
		sync_global_from_guest(vm, writes);
		for (running = 0, i = 0; i < nr_vcpus; i++)
			running += writes[i] < WRITES_PER_VCPU;
	} while (running);

	for (i = 0; i < nr_vcpus; i++)
		pthread_join(threads[i], NULL);
	sync_global_from_guest(vm, writes);
	sync_global_from_guest(vm, gps);
	sync_global_from_guest(vm, other_faults);
	sync_global_from_guest(vm, nmis);
	kvm_vm_free(vm);

	for (i = 0; i < nr_vcpus; i++) {
		total_writes += writes[i];
		total_gps += gps[i];
		total_faults += other_faults[i];
		total_nmis += nmis[i];
	}
	ksft_print_msg("storm: %u vCPUs, %lu guest MSR accesses, %lu #GP, %lu other faults, %lu NMIs; %u policy flips, %u enable flips, %u enable=0 refused (soft mode %s), %u module reloads, %u unloads refused (pinned)\n",
		       nr_vcpus, total_writes, total_gps, total_faults, total_nmis,
		       flips, enable_flips, refusals, soft ? "on" : "off", reloads,
		       pinned);
	ksft_print_msg("storm: after the VM %lu events kept, %lu vCPUs with kept-event state\n",
		       read_stat("kept_events"), read_stat("kept_vcpus"));
	/* The soft PMU pins the module while kvm-amd/kvm-intel is loaded. */
	ok = total_writes == nr_vcpus * WRITES_PER_VCPU && total_gps > 0 &&
	     !total_faults && read_stat("kept_events") == 0 &&
	     read_stat("kept_vcpus") == 0 &&
	     (soft ? !enable_flips && refusals && !reloads && pinned :
		     enable_flips && !refusals && reloads + pinned);
	write_file(PARAM_DIR "policy", "reuse");
	ksft_test_result(ok, "storm: guests finish, nothing left behind\n");
	ksft_finished();
}
