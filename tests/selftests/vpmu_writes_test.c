// SPDX-License-Identifier: GPL-2.0
/*
 * Guest writes alone, no PMIs, counted exactly.  One vCPU writes sequences
 * to its first GP counter's event select and counter: EN toggles, USR/OS
 * flips, a rotation of configs through one counter, and counter writes
 * while the counter is disabled, with short gaps, and with long gaps (the
 * vCPU thread shares its CPU with a spinning thread, so it is scheduled
 * out and KVM's lazy cleanup runs) while the counter is enabled, or
 * disabled.
 *
 * Under legacy, reuse and cache the host asserts:
 *   - one backend reprogram per guest write that changes the event select,
 *     none for counter writes;
 *   - creates exactly as the policy says: legacy one per enabling write,
 *     reuse one per enabling write of a config other than the event's,
 *     cache as reuse but none for a config it keeps.
 *
 * With the argument "idle": a vCPU multiplexes under cache, then stops
 * using its PMU and spins; a few time slices later it keeps no event.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm_util.h"
#include "pmu.h"
#include "processor.h"
#include "vpmu_util.h"

#define EN		ARCH_PERFMON_EVENTSEL_ENABLE
#define USR		ARCH_PERFMON_EVENTSEL_USR
#define OS		ARCH_PERFMON_EVENTSEL_OS
#define MAX_STEPS	128
/* A long gap: several host scheduler ticks under TCG. */
#define LONG_GAP	(200ULL * 1000 * 1000)

enum op { SEL, CTR };

struct step {
	uint8_t op;
	/* Long gaps after the write. */
	uint8_t long_gaps;
	uint64_t val;
};

/* Set by the host before the guest runs. */
static uint32_t eventsel_msr, counter_msr;
static struct step steps[MAX_STEPS];
static uint32_t nr_steps;

static void spin(uint64_t cycles)
{
	uint64_t start = rdtsc();

	while (rdtsc() - start < cycles)
		cpu_relax();
}

static void guest_code(void)
{
	uint32_t i;

	for (i = 0; i < nr_steps; i++) {
		wrmsr(steps[i].op == SEL ? eventsel_msr : counter_msr, steps[i].val);
		spin(steps[i].long_gaps * LONG_GAP);
	}
	GUEST_DONE();
}

struct sequence {
	const char *name;
	struct step steps[MAX_STEPS];
	uint32_t nr;
};

static void add(struct sequence *s, enum op op, uint64_t val, bool long_gap)
{
	TEST_ASSERT(s->nr < MAX_STEPS, "sequence too long");
	s->steps[s->nr++] = (struct step){ .op = op, .long_gaps = long_gap, .val = val };
}

/*
 * What a policy does with one counter's writes, expected or measured:
 * reprograms, creates, and why an enabling reprogram did not resume: the
 * counter had no event (the first), or its config changed.
 */
struct outcome {
	uint64_t reprograms, creates, no_event, config_changed;
};

static struct outcome expect(const struct sequence *s, const char *policy)
{
	bool legacy = !strcmp(policy, "legacy"), cache = !strcmp(policy, "cache");
	uint64_t sel = 0, cur = 0, kept[MAX_STEPS];
	uint32_t nr_kept = 0, i, k;
	struct outcome e = {};
	bool has_event = false;

	for (i = 0; i < s->nr; i++) {
		if (s->steps[i].op != SEL || s->steps[i].val == sel)
			continue;	/* KVM reprograms only on a changed event select */
		sel = s->steps[i].val;
		e.reprograms++;
		if (!(sel & EN))
			continue;	/* may not count: the event stays paused */
		if (!has_event)
			e.no_event++;
		else if (!legacy && cur != sel)
			e.config_changed++;
		if (!legacy && has_event && cur == sel)
			continue;	/* resumed */
		if (cache && has_event)
			kept[nr_kept++] = cur;
		for (k = 0; cache && k < nr_kept && kept[k] != sel; k++)
			;
		if (cache && k < nr_kept)
			kept[k] = kept[--nr_kept];	/* adopted */
		else
			e.creates++;
		has_event = true;
		cur = sel;
	}
	return e;
}

static void *spinner(void *arg)
{
	volatile bool *stop = arg;

	while (!*stop)
		;
	return NULL;
}

static void pin_to_cpu0(pthread_t thread)
{
	cpu_set_t cpus;

	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	TEST_ASSERT(!pthread_setaffinity_np(thread, sizeof(cpus), &cpus), "pin to CPU 0");
}

/* Runs `s` on a fresh VM under `policy`; returns the backend's statistics. */
static struct outcome run(const struct sequence *s, const char *policy)
{
	struct outcome got;
	volatile bool stop = false;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	pthread_t spin_thread;
	struct ucall uc;

	write_file(PARAM_DIR "policy", policy);
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	eventsel_msr = host_cpu_is_amd ? MSR_K7_EVNTSEL0 : MSR_P6_EVNTSEL0;
	counter_msr = host_cpu_is_amd ? MSR_K7_PERFCTR0 : MSR_IA32_PERFCTR0;
	memcpy(steps, s->steps, sizeof(steps));
	nr_steps = s->nr;
	sync_global_to_guest(vm, eventsel_msr);
	sync_global_to_guest(vm, counter_msr);
	sync_global_to_guest(vm, steps);
	sync_global_to_guest(vm, nr_steps);

	/* The vCPU shares CPU 0 with a spinner, so it is scheduled out. */
	pin_to_cpu0(pthread_self());
	TEST_ASSERT(!pthread_create(&spin_thread, NULL, spinner, (void *)&stop), "spinner");
	pin_to_cpu0(spin_thread);
	write_file(STATS_DIR "reset", "1");
	vcpu_run(vcpu);
	stop = true;
	pthread_join(spin_thread, NULL);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
	got.reprograms = read_stat("reprograms");
	got.creates = read_stat("creates");
	got.no_event = read_stat("reject_no_event");
	got.config_changed = read_stat("reject_config_changed");
	kvm_vm_free(vm);
	return got;
}

static void test_writes(void)
{
	static const char * const policies[] = { "legacy", "reuse", "cache" };
	static struct sequence seqs[5];
	const uint64_t a = 0x76 | USR | OS, b = 0xc0 | USR | OS, c = 0xc2 | USR | OS;
	uint32_t i, p;

	/* EN toggles, each enabled phase followed by a long gap. */
	seqs[0].name = "en_toggles";
	for (i = 0; i < 8; i++) {
		add(&seqs[0], SEL, a | EN, true);
		add(&seqs[0], SEL, a, false);
	}
	/* USR/OS flips of an enabled counter, short gaps. */
	seqs[1].name = "usr_os_flips";
	for (i = 0; i < 8; i++) {
		add(&seqs[1], SEL, a | EN, false);
		add(&seqs[1], SEL, (a & ~USR) | EN, false);
		add(&seqs[1], SEL, (a & ~OS) | EN, false);
	}
	/* Three configs rotated through one counter, as multiplexing does. */
	seqs[2].name = "rotation";
	for (i = 0; i < 8; i++) {
		const uint64_t cfg[] = { a, b, c };

		add(&seqs[2], SEL, cfg[i % 3] | EN, false);
		add(&seqs[2], SEL, cfg[i % 3], false);
	}
	/* Counter writes while disabled, then while enabled (long gaps). */
	seqs[3].name = "counter_writes";
	add(&seqs[3], SEL, a, false);
	for (i = 0; i < 8; i++)
		add(&seqs[3], CTR, 1000 * (i + 1), false);
	add(&seqs[3], SEL, a | EN, true);
	/*
	 * KVM sets the sample period from the written value relative to what
	 * the event counted so far: a small value would make the next
	 * overflow (and its reprogram) come after about the time counted.
	 */
	for (i = 0; i < 8; i++)
		add(&seqs[3], CTR, BIT_ULL(47) + i, i % 2);
	add(&seqs[3], SEL, a, false);
	add(&seqs[3], SEL, a | EN, false);

	/*
	 * EN toggles again, each disabled phase followed by a long gap: KVM's
	 * lazy cleanup finds the disabled counter unused.  cache keeps its
	 * event and resumes it; it did so only once the vCPU had kept another
	 * event (and so had backend state), and recreated it before that.
	 */
	seqs[4].name = "disabled_gaps";
	for (i = 0; i < 4; i++) {
		add(&seqs[4], SEL, a | EN, false);
		add(&seqs[4], SEL, a, true);
	}
	add(&seqs[4], SEL, a | EN, false);

	ksft_set_plan(ARRAY_SIZE(seqs) * ARRAY_SIZE(policies));
	for (i = 0; i < ARRAY_SIZE(seqs); i++) {
		for (p = 0; p < ARRAY_SIZE(policies); p++) {
			struct outcome e = expect(&seqs[i], policies[p]);
			struct outcome got = run(&seqs[i], policies[p]);
			uint64_t lazy = 0;

			/*
			 * KVM releases the event of a counter left disabled
			 * and untouched from one sched-in of the vCPU to the
			 * next (its lazy cleanup); the spinner makes those
			 * frequent, and on a slow (KASAN) host one can fall
			 * within a short gap.  Under reuse the next enable then
			 * finds no event: it creates where it would have
			 * resumed (one more create), or where the config
			 * changed anyway (no more).  Legacy creates either way;
			 * cache is held to the exact count.
			 */
			if (!strcmp(policies[p], "reuse") && got.no_event > e.no_event)
				lazy = got.no_event - e.no_event -
				       (e.config_changed > got.config_changed ?
					e.config_changed - got.config_changed : 0);
			ksft_print_msg("%s/%s: %u guest writes, reprograms %lu (expected %lu), creates %lu (expected %lu, %lu after KVM's lazy release)\n",
				       seqs[i].name, policies[p], seqs[i].nr, got.reprograms,
				       e.reprograms, got.creates, e.creates + lazy, lazy);
			ksft_test_result(got.reprograms == e.reprograms &&
					 got.creates == e.creates + lazy,
					 "%s_%s: exact reprograms and creates\n",
					 seqs[i].name, policies[p]);
		}
	}
}

/* Multiplexing, then nothing: the idle vCPU's kept events are released. */
static void test_idle(void)
{
	const uint64_t cfg[] = { 0x76, 0xc0, 0xc2, 0xc4, 0xc5, 0x7d };
	struct sequence s = { .name = "idle" };
	struct outcome got;
	uint64_t kept, released;
	uint32_t r, i;

	ksft_set_plan(1);
	/* Six configs over four counters' worth of writes to one counter. */
	for (r = 0; r < 12; r++) {
		for (i = 0; i < 4; i++) {
			add(&s, SEL, cfg[(r + i) % 6] | USR | OS | EN, false);
			add(&s, SEL, cfg[(r + i) % 6] | USR | OS, false);
		}
	}
	/*
	 * Then the PMU goes unused (no PMU MSR access, no counter enabled) for
	 * more than the 1 s of vCPU run time after which kept events go.
	 */
	s.steps[s.nr - 1].long_gaps = 48;

	got = run(&s, "cache");
	kept = read_stat("kept");
	released = read_stat("released_idle");
	ksft_print_msg("idle: %lu reprograms, %lu creates, %lu kept, %lu adopted, %lu evicted by the bound, %lu released idle\n",
		       got.reprograms, got.creates, kept, read_stat("adopted"), read_stat("evicted"),
		       released);
	ksft_test_result(kept > 0 && released > 0 &&
			 released == kept - read_stat("adopted") - read_stat("evicted"),
			 "idle: an idle vCPU keeps no events\n");
}

int main(int argc, char *argv[])
{
	const char *mode = argc > 1 ? argv[1] : "";

	TEST_REQUIRE(access(PARAM_DIR "policy", W_OK) == 0);
	TEST_REQUIRE(kvm_is_pmu_enabled());
	TEST_REQUIRE(host_cpu_is_amd || host_cpu_is_intel);

	ksft_print_header();
	if (!strcmp(mode, "idle"))
		test_idle();
	else
		test_writes();
	write_file(PARAM_DIR "policy", "reuse");
	ksft_finished();
}
