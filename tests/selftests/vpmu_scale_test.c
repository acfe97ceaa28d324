// SPDX-License-Identifier: GPL-2.0
/*
 * The cache policy at host scale: N VMs of 4 vCPUs each, in one process,
 * one thread per vCPU.  Every vCPU rotates 6 event configs over its 4 GP
 * counters as a multiplexing perf does (disable all, program the next
 * configs enabled), with no PMIs.  After every vCPU finished 20 warm-up
 * rotations the host reads the creates, lets them run 40 more and reads
 * them again.
 *
 *   vpmu_scale_test [total vCPUs...]     default: 4 32 128 512
 *
 * For each size, under reuse and cache: reuse creates 4 events per vCPU
 * and rotation; cache creates none after warm-up, no vCPU keeps more than
 * its bound (three times its counters plus one), and once the VMs are gone
 * nothing is kept and no vCPU state is left.  One line per size,
 * "VPMU-SCALE vcpus <n> reuse <creates> cache <creates> ...", is the table
 * of make demo.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kvm_util.h"
#include "pmu.h"
#include "processor.h"
#include "vpmu_util.h"

#define VCPUS_PER_VM	4
#define NR_COUNTERS	4
#define WARMUP_ROTATIONS	20
#define MEASURED_ROTATIONS	40
/* The default bound of the cache policy: three times the counters plus one. */
#define KEPT_BOUND	(3 * NR_COUNTERS + 1)

static const uint64_t configs[] = { 0x76, 0xc0, 0xc2, 0xc4, 0xc5, 0x7d };

/* Set by the host before the guest runs. */
static uint32_t eventsel_msr;

#define EVENTSEL_ON	(ARCH_PERFMON_EVENTSEL_USR | ARCH_PERFMON_EVENTSEL_OS | \
			 ARCH_PERFMON_EVENTSEL_ENABLE)

static uint64_t config_of(uint64_t rotation, uint32_t counter)
{
	return configs[(rotation + counter) % ARRAY_SIZE(configs)] | EVENTSEL_ON;
}

static void rotate(uint64_t *rotation, uint64_t n)
{
	uint64_t end = *rotation + n;
	uint32_t i;

	for (; *rotation < end; (*rotation)++) {
		for (i = 0; i < NR_COUNTERS; i++)
			wrmsr(eventsel_msr + i,
			      config_of(*rotation, i) & ~ARCH_PERFMON_EVENTSEL_ENABLE);
		for (i = 0; i < NR_COUNTERS; i++)
			wrmsr(eventsel_msr + i, config_of(*rotation + 1, i));
	}
}

static void guest_code(void)
{
	uint64_t rotation = 0;
	uint32_t i;

	for (i = 0; i < NR_COUNTERS; i++)
		wrmsr(eventsel_msr + i, config_of(0, i));
	rotate(&rotation, WARMUP_ROTATIONS);
	GUEST_SYNC(0);
	rotate(&rotation, MEASURED_ROTATIONS);
	GUEST_DONE();
}

static pthread_barrier_t warm, go;

static void *vcpu_thread(void *arg)
{
	struct kvm_vcpu *vcpu = arg;

	vcpu_run_until(vcpu, UCALL_SYNC);
	pthread_barrier_wait(&warm);
	pthread_barrier_wait(&go);
	vcpu_run_until(vcpu, UCALL_DONE);
	return NULL;
}

/*
 * KVM's sums over every vCPU of the host (only this test's VMs run), read
 * at the warm-up barrier and at the end, to tell where creates after
 * warm-up came from when there are any.
 */
static const char * const traced[] = {
	"pmu_event_creates", "pmu_event_create_failures", "pmu_event_resumes",
	"pmu_event_releases", "pmu_events_kept", "pmu_events_adopted",
	"pmu_events_evicted", "pmu_reprograms",
};

struct result {
	uint64_t after_warmup[ARRAY_SIZE(traced)];
	uint64_t creates_after_warmup;
	uint64_t evicted;
	uint64_t kept_max;
	uint64_t kept_after;
	uint64_t states_after;
};

/* Runs the rotation on `nr_vcpus` vCPUs under `policy`. */
static struct result run(uint32_t nr_vcpus, const char *policy)
{
	uint32_t nr_vms = nr_vcpus / VCPUS_PER_VM, v, i;
	struct kvm_vcpu **vcpus = calloc(nr_vcpus, sizeof(*vcpus));
	struct kvm_vm **vms = calloc(nr_vms, sizeof(*vms));
	pthread_t *threads = calloc(nr_vcpus, sizeof(*threads));
	struct result r = {};
	uint64_t at_warm[ARRAY_SIZE(traced)];

	TEST_ASSERT(vcpus && vms && threads, "out of memory");
	write_file(PARAM_DIR "policy", policy);
	write_file(STATS_DIR "kept_max", "0");
	TEST_ASSERT(read_stat("kept_events") == 0, "events kept before the run");

	eventsel_msr = host_cpu_is_amd ? MSR_K7_EVNTSEL0 : MSR_P6_EVNTSEL0;
	for (v = 0; v < nr_vms; v++) {
		vms[v] = vm_create_with_vcpus(VCPUS_PER_VM, guest_code,
					      &vcpus[v * VCPUS_PER_VM]);
		sync_global_to_guest(vms[v], eventsel_msr);
	}

	TEST_ASSERT(!pthread_barrier_init(&warm, NULL, nr_vcpus + 1), "barrier");
	TEST_ASSERT(!pthread_barrier_init(&go, NULL, nr_vcpus + 1), "barrier");
	for (i = 0; i < nr_vcpus; i++)
		TEST_ASSERT(!pthread_create(&threads[i], NULL, vcpu_thread, vcpus[i]),
			    "pthread_create vCPU %u", i);
	pthread_barrier_wait(&warm);
	for (i = 0; i < ARRAY_SIZE(traced); i++)
		at_warm[i] = kvm_sum(traced[i]);
	pthread_barrier_wait(&go);
	for (i = 0; i < nr_vcpus; i++)
		pthread_join(threads[i], NULL);
	for (i = 0; i < ARRAY_SIZE(traced); i++)
		r.after_warmup[i] = kvm_sum(traced[i]) - at_warm[i];
	r.creates_after_warmup = r.after_warmup[0];
	r.kept_max = read_stat("kept_max");
	r.evicted = kvm_sum("pmu_events_evicted");

	for (v = 0; v < nr_vms; v++)
		kvm_vm_free(vms[v]);
	r.kept_after = read_stat("kept_events");
	r.states_after = read_stat("kept_vcpus");
	pthread_barrier_destroy(&warm);
	pthread_barrier_destroy(&go);
	free(vcpus);
	free(vms);
	free(threads);
	return r;
}

int main(int argc, char *argv[])
{
	static const uint32_t default_sizes[] = { 4, 32, 128, 512 };
	uint32_t sizes[16], nr_sizes = 0, i, j;
	struct rlimit files = { 65536, 65536 };

	TEST_REQUIRE(access(PARAM_DIR "policy", W_OK) == 0);
	TEST_REQUIRE(kvm_is_pmu_enabled());
	TEST_REQUIRE(host_cpu_is_amd || host_cpu_is_intel);

	for (i = 1; i < (uint32_t)argc && nr_sizes < ARRAY_SIZE(sizes); i++)
		sizes[nr_sizes++] = strtoul(argv[i], NULL, 0);
	for (i = 0; !nr_sizes && i < ARRAY_SIZE(default_sizes); i++)
		sizes[i] = default_sizes[i];
	if (!nr_sizes)
		nr_sizes = ARRAY_SIZE(default_sizes);
	/* Every VM and vCPU is a file. */
	TEST_ASSERT(!setrlimit(RLIMIT_NOFILE, &files), "setrlimit: %s", strerror(errno));

	ksft_print_header();
	ksft_set_plan(nr_sizes);
	for (i = 0; i < nr_sizes; i++) {
		uint32_t n = sizes[i];
		/* Each enabling write of a new config creates under reuse. */
		uint64_t want_reuse = (uint64_t)n * MEASURED_ROTATIONS * NR_COUNTERS;
		struct result reuse, cache;
		bool ok;

		TEST_ASSERT(n && n % VCPUS_PER_VM == 0, "%u is not a multiple of %u",
			    n, VCPUS_PER_VM);
		reuse = run(n, "reuse");
		cache = run(n, "cache");
		printf("VPMU-SCALE vcpus %u vms %u reuse %lu cache %lu kept_max %lu bound %u evicted %lu\n",
		       n, n / VCPUS_PER_VM, reuse.creates_after_warmup,
		       cache.creates_after_warmup, cache.kept_max, KEPT_BOUND,
		       cache.evicted);
		printf("VPMU-SCALE-CACHE vcpus %u after warm-up:", n);
		for (j = 0; j < ARRAY_SIZE(traced); j++)
			printf(" %s %lu", traced[j], cache.after_warmup[j]);
		printf("\n");
		ksft_print_msg("%u vCPUs: creates after warm-up reuse %lu (expected %lu), cache %lu; most kept by one vCPU %lu (bound %u); after the VMs %lu kept, %lu vCPU states\n",
			       n, reuse.creates_after_warmup, want_reuse,
			       cache.creates_after_warmup, cache.kept_max, KEPT_BOUND,
			       reuse.kept_after + cache.kept_after,
			       reuse.states_after + cache.states_after);
		ok = reuse.creates_after_warmup == want_reuse &&
		     cache.creates_after_warmup == 0 &&
		     cache.kept_max <= KEPT_BOUND &&
		     !reuse.kept_after && !cache.kept_after &&
		     !reuse.states_after && !cache.states_after;
		ksft_test_result(ok, "scale_%u: cache creates nothing after warm-up\n", n);
	}
	write_file(PARAM_DIR "policy", "reuse");
	ksft_finished();
}
