// SPDX-License-Identifier: GPL-2.0
/*
 * Guest NMI workloads against kvm_vpmu: the guest samples with GP counters,
 * takes each overflow as an NMI through LVTPC, and handles it as the Linux
 * perf driver does (disable, re-arm, enable).  The host switches the
 * module's policy between VMs and checks its statistics.
 *
 *   pmi_<policy>   one sampling counter: PMIs arrive, counts only grow;
 *                  reuse creates one event, legacy one per reprogram.
 *   mux_<policy>   more configs than counters, rotated on every PMI.
 *   nmi_latency    the guest times its NMI handler (rdtsc) under legacy
 *                  and reuse; medians and their ratio are printed.
 *   mux_latency    the same for mux under legacy, reuse and cache.
 *
 * With VPMU_EXACT=1 in the environment (the emulator's time follows
 * instructions executed, so the medians repeat from boot to boot), the
 * latencies must also keep the order the policies promise: reuse's handler
 * below legacy's for one sampling counter, cache's below reuse's for mux.
 *   fixed_<policy> Intel only (fixed counters exist only there): fixed
 *                  counter 0 sampling through IA32_FIXED_CTR_CTRL,
 *                  enabled and disabled with GLOBAL_CTRL and acknowledged
 *                  through GLOBAL_OVF_CTRL as the perf driver does.
 *
 * With the argument "filter", counters run while the host sets a deny and
 * then an allow KVM_SET_PMU_EVENT_FILTER: a counter whose event the filter
 * denies must not count, under every policy.
 *
 * With the argument "faults", the module fails every third create
 * (fault injection, debugfs fail_create/): the guest must keep running, a counter
 * without an event must stop, the next reprogram must retry, and nothing
 * may leak.
 *
 * Needs kvm_vpmu loaded (with soft=1 on hosts without a PMU) and debugfs.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apic.h"
#include "kvm_util.h"
#include "pmu.h"
#include "processor.h"
#include "vpmu_util.h"

/* Guest counts between PMIs; in soft mode one count is 1 ns of vCPU time. */
#define SAMPLE_PERIOD	200000ULL
#define MAX_COUNTERS	4
/* Both vendors' GP counters are 48 bits wide, in soft mode too. */
#define COUNTER_MASK	(BIT_ULL(48) - 1)
#define MAX_SAMPLES	1024
/*
 * Give up after this many guest TSC cycles (2 minutes at TCG's 2 GHz)
 * without reaching the target: on the KASAN host a multiplexing run needed
 * over 30 s, where the GCC build's takes seconds.
 */
#define GUEST_BUDGET	(240ULL * 1000 * 1000 * 1000)
/*
 * A PMI normally follows within a few ms.  TCG's nested SVM occasionally
 * drops an injected NMI; without the PMI nothing re-arms the counter, so
 * after this long without one the guest counts a stall and re-arms.
 */
#define STALL_CYCLES	(2ULL * 1000 * 1000 * 1000)
/* With injected create failures, re-arm (and so retry) much sooner. */
#define FAULT_STALL_CYCLES	(20ULL * 1000 * 1000)
/* More stalls than this in one run is a failure, not TCG. */
#define MAX_STALLS	2
#define FAIL_CREATE_EVERY	"3"

#define EVENTSEL_FLAGS	(ARCH_PERFMON_EVENTSEL_USR | ARCH_PERFMON_EVENTSEL_OS | \
			 ARCH_PERFMON_EVENTSEL_INT | ARCH_PERFMON_EVENTSEL_ENABLE)

/* Distinct configs the multiplexing workload rotates through. */
static const uint64_t mux_events[] = { 0x76, 0xc0, 0xc2, 0xc4, 0xc5, 0x7d };

enum workload { PMI, MUX, FIXED };
static const char * const workload_name[] = { "pmi", "mux", "fixed" };

/* Set by the host before the guest runs. */
static uint32_t eventsel_msr;
static uint32_t counter_msr;
static uint32_t msr_stride;
static uint32_t nr_counters;
static uint32_t nr_configs;
static uint64_t target_nmis;
static uint64_t stall_cycles;
/* After this many PMIs (0: never) the guest reports once, for a snapshot. */
static uint64_t warmup_nmis;
/* Guest TSC when guest_code() began: GUEST_BUDGET counts from here. */
static uint64_t guest_start;

/* Reported by the guest. */
static uint64_t nmis;
static uint64_t guest_writes;
static uint64_t regressions;
static uint64_t stalls;
static uint64_t stopped_stalls;
static uint64_t handler_cycles[MAX_SAMPLES];
static uint64_t rotation;
static uint64_t eventsel[MAX_COUNTERS];

static void guest_wrmsr(uint32_t msr, uint64_t val)
{
	wrmsr(msr, val);
	guest_writes++;
}

static uint32_t evtsel_of(uint32_t i)
{
	return eventsel_msr + i * msr_stride;
}

static uint32_t ctr_of(uint32_t i)
{
	return counter_msr + i * msr_stride;
}

static uint64_t config_of(uint32_t i)
{
	return (mux_events[(rotation + i) % nr_configs]) | EVENTSEL_FLAGS;
}

static void guest_nmi_handler(struct ex_regs *regs)
{
	uint64_t start = rdtsc();
	/*
	 * The last PMI leaves the counters disabled.  When re-arming costs
	 * more vCPU time than SAMPLE_PERIOD (legacy's creates on a KASAN
	 * host), the first counter enabled overflows before the handler
	 * returns, the PMIs come back to back, and the main loop never runs
	 * again to see the target or the budget.
	 */
	bool last = nmis + 1 >= target_nmis || start - guest_start >= GUEST_BUDGET;
	uint32_t i;

	/* perf: disable all, re-arm the overflowed counters, enable all. */
	for (i = 0; i < nr_counters; i++)
		guest_wrmsr(evtsel_of(i), eventsel[i] & ~ARCH_PERFMON_EVENTSEL_ENABLE);
	if (nr_configs > 1 && !last) {
		/* perf's multiplexing rotation, here on every PMI. */
		rotation++;
		for (i = 0; i < nr_counters; i++)
			eventsel[i] = config_of(i);
	}
	for (i = 0; i < nr_counters && !last; i++)
		guest_wrmsr(ctr_of(i), -SAMPLE_PERIOD);
	for (i = 0; i < nr_counters && !last; i++)
		guest_wrmsr(evtsel_of(i), eventsel[i]);
	x2apic_write_reg(APIC_LVTPC, APIC_DM_NMI);

	handler_cycles[nmis % MAX_SAMPLES] = rdtsc() - start;
	WRITE_ONCE(nmis, nmis + 1);
	/*
	 * From the handler, not the main loop: under multiplexing the PMIs
	 * can come back to back and starve the loop.
	 */
	if (nmis == warmup_nmis)
		GUEST_SYNC(nmis);
}

static void rearm_all(void)
{
	uint32_t i;

	for (i = 0; i < nr_counters; i++) {
		guest_wrmsr(evtsel_of(i), eventsel[i] & ~ARCH_PERFMON_EVENTSEL_ENABLE);
		guest_wrmsr(ctr_of(i), -SAMPLE_PERIOD);
		guest_wrmsr(evtsel_of(i), eventsel[i]);
	}
}

static void guest_code(void)
{
	uint64_t start = rdtsc(), last_pmi = start, last_nmis = 0;
	uint32_t i;

	WRITE_ONCE(guest_start, start);

	x2apic_enable();
	x2apic_write_reg(APIC_LVTPC, APIC_DM_NMI);
	for (i = 0; i < nr_counters; i++) {
		eventsel[i] = config_of(i);
		guest_wrmsr(ctr_of(i), -SAMPLE_PERIOD);
		guest_wrmsr(evtsel_of(i), eventsel[i]);
	}

	/* Busy, never HLT: TCG's nested SVM has gaps in injection around HLT. */
	while (READ_ONCE(nmis) < target_nmis && rdtsc() - start < GUEST_BUDGET) {
		uint64_t seen = READ_ONCE(nmis);

		if (seen != last_nmis) {
			last_nmis = seen;
			last_pmi = rdtsc();
		} else if (rdtsc() - last_pmi > stall_cycles) {
			uint64_t a = rdmsr(ctr_of(0)), t = rdtsc();

			while (rdtsc() - t < stall_cycles / 16)
				;
			/* Without an event (failed create) KVM stops the counter. */
			if (rdmsr(ctr_of(0)) == a)
				stopped_stalls++;
			stalls++;
			rearm_all();
			last_pmi = rdtsc();
		}

		uint64_t a = rdmsr(ctr_of(0));
		uint64_t b = rdmsr(ctr_of(0));

		/*
		 * A running counter only grows, unless a PMI re-armed it.  It
		 * may wrap before its PMI arrives (skid), hence modulo width.
		 */
		if (READ_ONCE(nmis) == seen && ((b - a) & COUNTER_MASK) > COUNTER_MASK / 2)
			regressions++;
	}
	for (i = 0; i < nr_counters; i++)
		guest_wrmsr(evtsel_of(i), 0);
	GUEST_DONE();
}

#define FIXED0_CTRL	0xbull		/* OS | USR | PMI */
#define FIXED0_GLOBAL	BIT_ULL(32)

static void fixed_nmi_handler(struct ex_regs *regs)
{
	uint64_t start = rdtsc();

	/* intel_pmu_handle_irq(): disable all, ack, re-arm, enable all. */
	guest_wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0);
	guest_wrmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL, rdmsr(MSR_CORE_PERF_GLOBAL_STATUS));
	guest_wrmsr(MSR_CORE_PERF_FIXED_CTR0, -SAMPLE_PERIOD & COUNTER_MASK);
	guest_wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, FIXED0_GLOBAL);
	x2apic_write_reg(APIC_LVTPC, APIC_DM_NMI);

	handler_cycles[nmis % MAX_SAMPLES] = rdtsc() - start;
	WRITE_ONCE(nmis, nmis + 1);
}

static void fixed_guest_code(void)
{
	uint64_t start = rdtsc();

	x2apic_enable();
	x2apic_write_reg(APIC_LVTPC, APIC_DM_NMI);
	guest_wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0);
	guest_wrmsr(MSR_CORE_PERF_FIXED_CTR0, -SAMPLE_PERIOD & COUNTER_MASK);
	guest_wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, FIXED0_CTRL);
	guest_wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, FIXED0_GLOBAL);
	while (READ_ONCE(nmis) < target_nmis && rdtsc() - start < GUEST_BUDGET) {
		uint64_t seen = READ_ONCE(nmis);
		uint64_t a = rdmsr(MSR_CORE_PERF_FIXED_CTR0);
		uint64_t b = rdmsr(MSR_CORE_PERF_FIXED_CTR0);

		if (READ_ONCE(nmis) == seen && ((b - a) & COUNTER_MASK) > COUNTER_MASK / 2)
			regressions++;
	}
	guest_wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0);
	GUEST_DONE();
}

struct result {
	uint64_t nmis, guest_writes, regressions, stalls, stopped_stalls;
	/* KVM's counts for the VM (pmu_* vCPU statistics), read before it goes. */
	uint64_t reprograms, creates, resumes, releases, failures;
	uint64_t kept, adopted, evicted;
	/* Fault injection, and events kept host-wide at the VM's exit and after. */
	uint64_t injected, kept_before_exit, kept_after;
	/* Creates after the warm-up checkpoint (when one was asked for). */
	uint64_t creates_after_warmup;
	uint64_t state_after;
	uint64_t median_cycles;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static struct result run_warm(enum workload w, const char *policy, uint64_t target,
			      uint64_t stall, uint64_t warmup)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct pmu_stats stats;
	struct result r = {};
	struct ucall uc;
	uint64_t n;

	uint64_t injected = injected_failures();

	write_file(PARAM_DIR "policy", policy);

	if (w == FIXED) {
		vm = vm_create_with_one_vcpu(&vcpu, fixed_guest_code);
		vm_install_exception_handler(vm, NMI_VECTOR, fixed_nmi_handler);
	} else {
		vm = vm_create_with_one_vcpu(&vcpu, guest_code);
		vm_install_exception_handler(vm, NMI_VECTOR, guest_nmi_handler);
	}

	if (host_cpu_is_amd) {
		eventsel_msr = MSR_K7_EVNTSEL0;
		counter_msr = MSR_K7_PERFCTR0;
	} else {
		eventsel_msr = MSR_P6_EVNTSEL0;
		counter_msr = MSR_IA32_PERFCTR0;
	}
	msr_stride = 1;
	nr_counters = w == MUX ? MAX_COUNTERS : 1;
	nr_configs = w == MUX ? ARRAY_SIZE(mux_events) : 1;
	target_nmis = target;
	stall_cycles = stall;
	warmup_nmis = warmup;
	sync_global_to_guest(vm, eventsel_msr);
	sync_global_to_guest(vm, counter_msr);
	sync_global_to_guest(vm, msr_stride);
	sync_global_to_guest(vm, nr_counters);
	sync_global_to_guest(vm, nr_configs);
	sync_global_to_guest(vm, target_nmis);
	sync_global_to_guest(vm, stall_cycles);
	sync_global_to_guest(vm, warmup_nmis);

	uint64_t warm_creates = 0;

	for (;;) {
		vcpu_run(vcpu);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			warm_creates = vcpu_stat(vcpu, "pmu_event_creates");
			continue;
		case UCALL_DONE:
			break;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			break;
		default:
			TEST_FAIL("unexpected exit %s", exit_reason_str(vcpu->run->exit_reason));
		}
		break;
	}

	sync_global_from_guest(vm, nmis);
	sync_global_from_guest(vm, guest_writes);
	sync_global_from_guest(vm, regressions);
	sync_global_from_guest(vm, stalls);
	sync_global_from_guest(vm, stopped_stalls);
	sync_global_from_guest(vm, handler_cycles);
	r.nmis = nmis;
	r.guest_writes = guest_writes;
	r.regressions = regressions;
	r.stalls = stalls;
	r.stopped_stalls = stopped_stalls;
	n = r.nmis < MAX_SAMPLES ? r.nmis : MAX_SAMPLES;
	if (n) {
		qsort(handler_cycles, n, sizeof(handler_cycles[0]), cmp_u64);
		r.median_cycles = handler_cycles[n / 2];
	}
	/* The VM's own counts, before it goes (KVM drops them with it). */
	stats = vm_pmu_stats(vm);
	r.kept_before_exit = read_stat("kept_events");
	kvm_vm_free(vm);

	r.reprograms = stats.reprograms;
	r.creates = stats.creates;
	r.resumes = stats.resumes;
	r.releases = stats.releases;
	r.failures = stats.create_failures;
	r.injected = injected_failures() - injected;
	r.kept = stats.kept;
	r.adopted = stats.adopted;
	r.evicted = stats.evicted;
	r.kept_after = read_stat("kept_events");
	r.creates_after_warmup = warmup ? r.creates - warm_creates : 0;
	r.state_after = read_stat("kept_vcpus");

	if (r.stalls)
		ksft_print_msg("%s/%s: %lu stalls without a PMI (re-armed), %lu with the counter stopped\n",
			       workload_name[w], policy, r.stalls, r.stopped_stalls);
	if (!strcmp(policy, "cache"))
		ksft_print_msg("%s/%s: kept %lu adopted %lu evicted %lu still kept at exit %lu; creates after %lu warm-up PMIs %lu\n",
			       workload_name[w], policy, r.kept, r.adopted, r.evicted,
			       r.kept_before_exit,
			       warmup, r.creates_after_warmup);
	ksft_print_msg("%s/%s: nmis %lu guest writes %lu reprograms %lu creates %lu resumes %lu releases %lu create failures %lu; creates per 1000 PMIs %lu; handler median %lu cycles\n",
		       workload_name[w], policy, r.nmis, r.guest_writes,
		       r.reprograms, r.creates, r.resumes, r.releases,
		       r.failures, r.nmis ? r.creates * 1000 / r.nmis : 0,
		       r.median_cycles);
	return r;
}

static struct result run(enum workload w, const char *policy, uint64_t target,
			 uint64_t stall)
{
	return run_warm(w, policy, target, stall, 0);
}

static bool common_checks(const char *name, struct result *r, uint64_t target)
{
	if (r->stalls > MAX_STALLS) {
		ksft_print_msg("%s: %lu stalls without a PMI\n", name, r->stalls);
		return false;
	}
	if (r->nmis < target) {
		ksft_print_msg("%s: %lu of %lu PMIs arrived\n", name, r->nmis, target);
		return false;
	}
	if (r->regressions) {
		ksft_print_msg("%s: counter went backwards %lu times\n", name, r->regressions);
		return false;
	}
	if (r->failures || r->state_after || r->kept_after) {
		ksft_print_msg("%s: %lu create failures, %lu vCPU states left after the VM, %lu kept\n",
			       name, r->failures, r->state_after, r->kept_after);
		return false;
	}
	return true;
}

static void test_workloads(void)
{
	struct result pmi_legacy, pmi_reuse, pmi_cache, mux_legacy, mux_reuse, mux_cache;
	struct result lat_legacy, lat_reuse, lat_cache;
	const uint64_t target = 200, warmup = 50;
	bool ok;

	ksft_set_plan(has_fixed_counters() ? 12 : 9);

	pmi_legacy = run(PMI, "legacy", target, STALL_CYCLES);
	/*
	 * Every reprogram of a counter that may count creates an event, and
	 * each but the first replaces one (KVM releases the last with the VM).
	 */
	ok = common_checks("pmi_legacy", &pmi_legacy, target) &&
	     pmi_legacy.resumes == 0 && pmi_legacy.creates <= pmi_legacy.reprograms &&
	     pmi_legacy.releases == pmi_legacy.creates - 1 &&
	     pmi_legacy.creates >= pmi_legacy.nmis;
	ksft_test_result(ok, "pmi_legacy: one create per counting reprogram\n");

	pmi_reuse = run(PMI, "reuse", target, STALL_CYCLES);
	ok = common_checks("pmi_reuse", &pmi_reuse, target) &&
	     pmi_reuse.creates == 1 && pmi_reuse.releases == 0 &&
	     pmi_reuse.resumes >= pmi_reuse.nmis;
	ksft_test_result(ok, "pmi_reuse: one create for one config\n");

	pmi_cache = run(PMI, "cache", target, STALL_CYCLES);
	ok = common_checks("pmi_cache", &pmi_cache, target) &&
	     pmi_cache.creates == 1 && pmi_cache.resumes >= pmi_cache.nmis;
	ksft_test_result(ok, "pmi_cache: one create for one config\n");

	mux_legacy = run(MUX, "legacy", target, STALL_CYCLES);
	ok = common_checks("mux_legacy", &mux_legacy, target) && mux_legacy.resumes == 0;
	ksft_test_result(ok, "mux_legacy\n");

	mux_reuse = run(MUX, "reuse", target, STALL_CYCLES);
	ok = common_checks("mux_reuse", &mux_reuse, target) &&
	     mux_reuse.creates <= mux_legacy.creates * mux_reuse.nmis / mux_legacy.nmis + MAX_COUNTERS;
	ksft_test_result(ok, "mux_reuse: no more creates per PMI than legacy\n");

	/* The multiplexing workload is where cache differs: no creates after warm-up. */
	mux_cache = run_warm(MUX, "cache", target, STALL_CYCLES, warmup);
	/*
	 * KVM reprograms a rotation's counters in index order and each keeps
	 * its old event before looking for its new one, so the six configs
	 * need up to twelve events (the model's mux replay shows exactly 12).
	 */
	ok = common_checks("mux_cache", &mux_cache, target) &&
	     mux_cache.creates_after_warmup == 0 &&
	     mux_cache.creates <= 2 * ARRAY_SIZE(mux_events) + mux_cache.evicted;
	ksft_test_result(ok, "mux_cache: no creates after warm-up\n");

	/*
	 * A bound below what the rotation needs (a config returns only after
	 * eight keeps): the set evicts, never holds more than the bound, and
	 * leaves nothing behind (common_checks()).
	 */
	write_file(PARAM_DIR "cache_size", "2");
	write_file(STATS_DIR "kept_max", "0");
	mux_cache = run(MUX, "cache", target, STALL_CYCLES);
	write_file(PARAM_DIR "cache_size", "0");
	ksft_print_msg("mux_cache_bound: at most %lu events kept at once\n", read_stat("kept_max"));
	ok = common_checks("mux_cache_bound", &mux_cache, target) &&
	     mux_cache.evicted > 0 && mux_cache.kept_before_exit <= 2 &&
	     read_stat("kept_max") <= 2;
	ksft_test_result(ok, "mux_cache_bound: a small bound evicts and leaks nothing\n");

	lat_legacy = run(PMI, "legacy", 2 * target, STALL_CYCLES);
	lat_reuse = run(PMI, "reuse", 2 * target, STALL_CYCLES);
	ok = common_checks("lat_legacy", &lat_legacy, 2 * target) &&
	     common_checks("lat_reuse", &lat_reuse, 2 * target) &&
	     lat_legacy.median_cycles && lat_reuse.median_cycles;
	if (ok)
		ksft_print_msg("nmi_latency: handler median legacy %lu cycles, reuse %lu cycles, legacy:reuse %lu.%02lu\n",
			       lat_legacy.median_cycles, lat_reuse.median_cycles,
			       lat_legacy.median_cycles / lat_reuse.median_cycles,
			       lat_legacy.median_cycles * 100 / lat_reuse.median_cycles % 100);
	if (ok && exact_costs())
		ok = lat_reuse.median_cycles < lat_legacy.median_cycles;
	ksft_test_result(ok, "nmi_latency%s\n", exact_costs() ? ": reuse below legacy" : "");

	lat_legacy = run(MUX, "legacy", target, STALL_CYCLES);
	lat_reuse = run(MUX, "reuse", target, STALL_CYCLES);
	lat_cache = run(MUX, "cache", target, STALL_CYCLES);
	ok = common_checks("lat_legacy", &lat_legacy, target) &&
	     common_checks("lat_reuse", &lat_reuse, target) &&
	     common_checks("lat_cache", &lat_cache, target) &&
	     lat_legacy.median_cycles && lat_reuse.median_cycles && lat_cache.median_cycles;
	if (ok)
		ksft_print_msg("mux_latency: handler median legacy %lu, reuse %lu, cache %lu cycles; legacy:reuse:cache = 1 : %lu.%02lu : %lu.%02lu\n",
			       lat_legacy.median_cycles, lat_reuse.median_cycles,
			       lat_cache.median_cycles,
			       lat_reuse.median_cycles * 100 / lat_legacy.median_cycles / 100,
			       lat_reuse.median_cycles * 100 / lat_legacy.median_cycles % 100,
			       lat_cache.median_cycles * 100 / lat_legacy.median_cycles / 100,
			       lat_cache.median_cycles * 100 / lat_legacy.median_cycles % 100);
	/*
	 * Not held against legacy: every mux reprogram changes the config,
	 * so reuse creates as legacy does, after a compare.
	 */
	if (ok && exact_costs())
		ok = lat_cache.median_cycles < lat_reuse.median_cycles;
	ksft_test_result(ok, "mux_latency%s\n", exact_costs() ? ": cache below reuse" : "");

	if (!has_fixed_counters()) {
		ksft_print_msg("fixed-counter workloads not planned: the vCPU has no fixed counters (AMD)\n");
		return;
	}
	pmi_legacy = run(FIXED, "legacy", target, STALL_CYCLES);
	ok = common_checks("fixed_legacy", &pmi_legacy, target) &&
	     pmi_legacy.resumes == 0 && pmi_legacy.creates <= pmi_legacy.reprograms &&
	     pmi_legacy.creates >= pmi_legacy.nmis;
	ksft_test_result(ok, "fixed_legacy: one create per counting reprogram\n");
	pmi_reuse = run(FIXED, "reuse", target, STALL_CYCLES);
	ok = common_checks("fixed_reuse", &pmi_reuse, target) &&
	     pmi_reuse.creates == 1 && pmi_reuse.resumes >= pmi_reuse.nmis;
	ksft_test_result(ok, "fixed_reuse: GLOBAL_CTRL toggles only resume\n");
	pmi_cache = run(FIXED, "cache", target, STALL_CYCLES);
	ok = common_checks("fixed_cache", &pmi_cache, target) &&
	     pmi_cache.creates == 1 && pmi_cache.resumes >= pmi_cache.nmis;
	ksft_test_result(ok, "fixed_cache: GLOBAL_CTRL toggles only resume\n");
	ksft_print_msg("fixed: creates per 1000 PMIs legacy %lu, reuse %lu, cache %lu (reuse -%lu.%lu%%; seed a6da0d77: -99.9%%)\n",
		       pmi_legacy.creates * 1000 / pmi_legacy.nmis,
		       pmi_reuse.creates * 1000 / pmi_reuse.nmis,
		       pmi_cache.creates * 1000 / pmi_cache.nmis,
		       (pmi_legacy.creates - pmi_reuse.creates) * 100 / pmi_legacy.creates,
		       (pmi_legacy.creates - pmi_reuse.creates) * 1000 / pmi_legacy.creates % 10);
}

static void test_faults(void)
{
	/* Reuse creates once for one config: multiplexing makes it create. */
	static const struct {
		enum workload w;
		const char *policy;
	} runs[] = { { PMI, "legacy" }, { MUX, "reuse" }, { MUX, "cache" } };
	const uint64_t target = 100;
	unsigned int i;

	ksft_set_plan(ARRAY_SIZE(runs));
	for (i = 0; i < ARRAY_SIZE(runs); i++) {
		const char *name = runs[i].w == MUX ? "mux" : "pmi";
		struct result r;
		bool ok;

		fail_every_nth_create(FAIL_CREATE_EVERY);
		r = run(runs[i].w, runs[i].policy, target, FAULT_STALL_CYCLES);
		fail_every_nth_create(NULL);
		ksft_print_msg("faults/%s/%s: %lu creates failed (%lu injected), %lu stalls, %lu with the counter stopped\n",
			       name, runs[i].policy, r.failures, r.injected, r.stalls,
			       r.stopped_stalls);
		ok = r.nmis >= target && !r.regressions && !r.state_after &&
		     r.injected > 0 && r.failures == r.injected &&
		     r.creates > r.failures;
		/* Counter 0 alone: only there can the guest see it stop. */
		if (runs[i].w == PMI)
			ok = ok && r.stopped_stalls > 0;
		ksft_test_result(ok, "faults_%s_%s: guest runs on, writes retry, nothing leaks\n",
				 name, runs[i].policy);
	}
}

#define FILTERED_EVENT	0x76	/* counter 0 */
#define OTHER_EVENT	0xc0	/* counter 1 */
#define FILTER_SPIN	(200ULL * 1000 * 1000)

/* Two counting events; after each phase, report what each counted. */
static void filter_guest_code(void)
{
	const uint64_t flags = ARCH_PERFMON_EVENTSEL_USR | ARCH_PERFMON_EVENTSEL_OS |
			       ARCH_PERFMON_EVENTSEL_ENABLE;
	int phase;

	wrmsr(ctr_of(0), 0);
	wrmsr(ctr_of(1), 0);
	wrmsr(evtsel_of(0), FILTERED_EVENT | flags);
	wrmsr(evtsel_of(1), OTHER_EVENT | flags);
	for (phase = 0; phase < 3; phase++) {
		uint64_t a0 = rdmsr(ctr_of(0)), a1 = rdmsr(ctr_of(1));
		uint64_t t = rdtsc();

		while (rdtsc() - t < FILTER_SPIN)
			;
		GUEST_SYNC_ARGS(phase, rdmsr(ctr_of(0)) - a0, rdmsr(ctr_of(1)) - a1, 0, 0);
	}
	GUEST_DONE();
}

static void set_filter(struct kvm_vm *vm, uint32_t action, uint64_t event)
{
	struct {
		struct kvm_pmu_event_filter f;
		uint64_t events[1];
	} filter = {
		.f = { .action = action, .nevents = 1 },
		.events = { event },
	};

	vm_ioctl(vm, KVM_SET_PMU_EVENT_FILTER, &filter.f);
}

static void test_filter(void)
{
	static const char * const policies[] = { "legacy", "reuse", "cache" };
	unsigned int i;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_PMU_EVENT_FILTER));
	ksft_set_plan(ARRAY_SIZE(policies));
	for (i = 0; i < ARRAY_SIZE(policies); i++) {
		uint64_t counted[3][2] = {}, creates[3] = {};
		struct kvm_vcpu *vcpu;
		struct kvm_vm *vm;
		struct ucall uc;
		bool ok;
		int phase;

		write_file(PARAM_DIR "policy", policies[i]);
		vm = vm_create_with_one_vcpu(&vcpu, filter_guest_code);
		eventsel_msr = host_cpu_is_amd ? MSR_K7_EVNTSEL0 : MSR_P6_EVNTSEL0;
		counter_msr = host_cpu_is_amd ? MSR_K7_PERFCTR0 : MSR_IA32_PERFCTR0;
		msr_stride = 1;
		sync_global_to_guest(vm, eventsel_msr);
		sync_global_to_guest(vm, counter_msr);
		sync_global_to_guest(vm, msr_stride);

		for (phase = 0; phase < 3; phase++) {
			vcpu_run(vcpu);
			if (get_ucall(vcpu, &uc) == UCALL_ABORT)
				REPORT_GUEST_ASSERT(uc);
			TEST_ASSERT(uc.cmd == UCALL_SYNC && uc.args[1] == phase,
				    "expected the guest's phase %d", phase);
			counted[phase][0] = uc.args[2];
			counted[phase][1] = uc.args[3];
			creates[phase] = vcpu_stat(vcpu, "pmu_event_creates");
			/* Change the filter while both counters run. */
			if (phase == 0)
				set_filter(vm, KVM_PMU_EVENT_DENY, FILTERED_EVENT);
			else if (phase == 1)
				set_filter(vm, KVM_PMU_EVENT_ALLOW, FILTERED_EVENT);
		}
		vcpu_run(vcpu);
		TEST_ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_DONE);
		kvm_vm_free(vm);

		ksft_print_msg("filter/%s: counted (0x%x, 0x%x): none %lu %lu, deny 0x%x %lu %lu, allow 0x%x %lu %lu; creates %lu %lu %lu; vCPU states after %lu\n",
			       policies[i], FILTERED_EVENT, OTHER_EVENT,
			       counted[0][0], counted[0][1], FILTERED_EVENT,
			       counted[1][0], counted[1][1], FILTERED_EVENT,
			       counted[2][0], counted[2][1],
			       creates[0], creates[1], creates[2], read_stat("kept_vcpus"));
		ok = counted[0][0] && counted[0][1] &&
		     !counted[1][0] && counted[1][1] &&
		     counted[2][0] && !counted[2][1] &&
		     read_stat("kept_vcpus") == 0 && read_stat("kept_events") == 0;
		ksft_test_result(ok, "filter_%s: denied events never count\n", policies[i]);
	}
}

int main(int argc, char *argv[])
{
	const char *mode = argc > 1 ? argv[1] : "";

	TEST_REQUIRE(access(PARAM_DIR "policy", W_OK) == 0);
	TEST_REQUIRE(access(STATS_DIR "kept_events", R_OK) == 0);
	TEST_REQUIRE(kvm_is_pmu_enabled());
	TEST_REQUIRE(host_cpu_is_amd || host_cpu_is_intel);

	ksft_print_header();
	if (!strcmp(mode, "faults"))
		test_faults();
	else if (!strcmp(mode, "filter"))
		test_filter();
	else
		test_workloads();

	write_file(PARAM_DIR "policy", "reuse");
	ksft_finished();
}
