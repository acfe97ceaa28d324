// SPDX-License-Identifier: GPL-2.0
/*
 * Guest writes alone, no PMIs, counted exactly.  One vCPU writes sequences
 * to its first GP counter's event select and counter: EN toggles, USR/OS
 * flips, a rotation of configs through one counter, and counter writes
 * while the counter is disabled, with short gaps, and with long gaps (the
 * vCPU thread shares its CPU with a spinning thread, so it is scheduled
 * out and KVM's lazy cleanup runs) while the counter is enabled, or
 * disabled.  On Intel the same for fixed counter 0, through the fields of
 * IA32_FIXED_CTR_CTRL and its bit of IA32_PERF_GLOBAL_CTRL.
 *
 * Under legacy, reuse and cache the host asserts:
 *   - one backend reprogram per guest write that changes what a counter's
 *     reprogram reads (its event select, its field of FIXED_CTR_CTRL, its
 *     bit of GLOBAL_CTRL), none for counter writes;
 *   - creates exactly as the policy says: legacy one per enabling write,
 *     reuse one per enabling write of a config other than the event's,
 *     cache as reuse but none for a config it keeps.
 *
 * With the argument "idle": a vCPU multiplexes under cache, then stops
 * using its PMU and spins; a few time slices later it keeps no event.
 *
 * With "concurrent": two VMs with different sequences run at once under
 * cache; KVM's statistics of each (its stats fd) must be what that VM
 * alone gives, and KVM's host-wide sums in debugfs their sum.
 *
 * With "trace" (a kernel with tracing): the kvm_pmu_reprogram tracepoint
 * records of a sequence must agree with the VM's statistics.
 *
 * With "pin": kvm_vpmu's module references grow by one per vCPU once it
 * reprogrammed, and drop back when its VM is freed.
 *
 * With the argument "cost" (the cost suite, on an emulator whose time
 * follows instructions executed): the guest times fixed sequences of
 * writes to its GP counters' event selects, each write followed by the
 * same loop, under each policy, and prints the cycles per write.  With
 * "cost kvm", the same under KVM's own reprogram path (kvm-c-reference.ko,
 * tests/bench/), which counts the same reprograms in KVM's statistics.
 * With "cost <policy>", under that policy only (scripts/cost-profile.sh).
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
/*
 * A long gap, in ms of guest time: several host scheduler ticks.  In TSC
 * cycles at the guest's rate: 2 GHz under QEMU, 500 MHz under Bochs, whose
 * TSC counts instructions.
 */
#define LONG_GAP_MS	100

/*
 * What a step writes: GP counter 0's event select or counter, or (Intel)
 * IA32_FIXED_CTR_CTRL, IA32_PERF_GLOBAL_CTRL or fixed counter 0.
 */
enum op { SEL, CTR, FIXED_CTRL, GLOBAL_CTRL, FIXED_CTR, NR_OPS };

/* Fixed counter 0's field of IA32_FIXED_CTR_CTRL: OS, USR, PMI. */
#define F_OS		BIT_ULL(0)
#define F_USR		BIT_ULL(1)
#define F_PMI		BIT_ULL(3)
#define FIXED0_FIELD(ctrl)	((ctrl) & 0xf)
#define FIXED0_GLOBAL	BIT_ULL(32)
/* The four GP counters stay enabled in GLOBAL_CTRL (KVM's reset value). */
#define GP_GLOBAL	0xfULL

struct step {
	uint8_t op;
	/* Long gaps after the write. */
	uint8_t long_gaps;
	uint64_t val;
};

/* Set by the host before the guest runs. */
static uint32_t msrs[NR_OPS];
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
		wrmsr(msrs[steps[i].op], steps[i].val);
		spin(steps[i].long_gaps * LONG_GAP_MS * guest_tsc_khz);
	}
	GUEST_DONE();
}

/* The counters a sequence programs: GP counter 0, fixed counter 0 (Intel). */
#define GP0		BIT(0)
#define FIXED0		BIT(1)

struct sequence {
	const char *name;
	/* GP0 unless set. */
	uint32_t counters;
	struct step steps[MAX_STEPS];
	uint32_t nr;
};

static void add(struct sequence *s, enum op op, uint64_t val, uint8_t long_gaps)
{
	TEST_ASSERT(s->nr < MAX_STEPS, "sequence too long");
	s->steps[s->nr++] = (struct step){ .op = op, .long_gaps = long_gaps, .val = val };
}

/*
 * What a policy does with one counter's writes, expected or measured:
 * reprograms, creates, and why an enabling reprogram did not resume: the
 * counter had no event (the first), or its config changed.  Expected only:
 * how many of reuse's resumes follow a phase in which the counter was
 * disabled, where KVM's lazy cleanup may have released the event first
 * (each then creates instead).
 */
struct outcome {
	uint64_t reprograms, creates, no_event, config_changed, lazy_max;
	/* Measured only: events kept in all, and still kept as the VM exits. */
	uint64_t kept, kept_at_exit;
};

/* What one counter of the sequence makes the policy do. */
static struct outcome expect_counter(const struct sequence *s, const char *policy, bool fixed)
{
	bool legacy = !strcmp(policy, "legacy"), cache = !strcmp(policy, "cache");
	uint64_t sel = 0, fixed_ctrl = 0, global = GP_GLOBAL, cur = 0, cfg, kept[MAX_STEPS];
	const uint64_t global_bit = fixed ? FIXED0_GLOBAL : BIT_ULL(0);
	uint32_t nr_kept = 0, i, k;
	struct outcome e = {};
	bool has_event = false, changed, counting, disabled = false;

	for (i = 0; i < s->nr; i++) {
		const struct step *st = &s->steps[i];

		/*
		 * KVM reprograms a GP counter when its event select changes, a
		 * fixed counter when its field of FIXED_CTR_CTRL changes, and
		 * either when its bit of GLOBAL_CTRL changes; the counter's
		 * config is the event select, or the field.
		 */
		switch (st->op) {
		case SEL:
			changed = !fixed && st->val != sel;
			sel = st->val;
			break;
		case FIXED_CTRL:
			changed = fixed && FIXED0_FIELD(st->val) != FIXED0_FIELD(fixed_ctrl);
			fixed_ctrl = st->val;
			break;
		case GLOBAL_CTRL:
			changed = (st->val ^ global) & global_bit;
			global = st->val;
			break;
		default:
			changed = false;
		}
		if (!changed)
			continue;
		e.reprograms++;
		cfg = fixed ? FIXED0_FIELD(fixed_ctrl) : sel;
		counting = (global & global_bit) && (fixed ? cfg & (F_OS | F_USR) : cfg & EN);
		if (!counting) {
			disabled = has_event;
			continue;	/* may not count: the event stays paused */
		}
		if (!has_event)
			e.no_event++;
		else if (!legacy && cur != cfg)
			e.config_changed++;
		if (!legacy && has_event && cur == cfg) {
			e.lazy_max += disabled;
			disabled = false;
			continue;	/* resumed */
		}
		disabled = false;
		if (cache && has_event)
			kept[nr_kept++] = cur;
		for (k = 0; cache && k < nr_kept && kept[k] != cfg; k++)
			;
		if (cache && k < nr_kept)
			kept[k] = kept[--nr_kept];	/* adopted */
		else
			e.creates++;
		has_event = true;
		cur = cfg;
	}
	return e;
}

/* What the policy does with the sequence's counters, together. */
static struct outcome expect(const struct sequence *s, const char *policy)
{
	uint32_t counters = s->counters ?: GP0;
	struct outcome e = {}, c;
	int fixed;

	for (fixed = 0; fixed < 2; fixed++) {
		if (!(counters & (fixed ? FIXED0 : GP0)))
			continue;
		c = expect_counter(s, policy, fixed);
		e.reprograms += c.reprograms;
		e.creates += c.creates;
		e.no_event += c.no_event;
		e.config_changed += c.config_changed;
		e.lazy_max += c.lazy_max;
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

/* A VM of one vCPU that will write `s`. */
static struct kvm_vm *create_vm(const struct sequence *s, struct kvm_vcpu **vcpu)
{
	struct kvm_vm *vm = vm_create_with_one_vcpu(vcpu, guest_code);

	msrs[SEL] = host_cpu_is_amd ? MSR_K7_EVNTSEL0 : MSR_P6_EVNTSEL0;
	msrs[CTR] = host_cpu_is_amd ? MSR_K7_PERFCTR0 : MSR_IA32_PERFCTR0;
	msrs[FIXED_CTRL] = MSR_CORE_PERF_FIXED_CTR_CTRL;
	msrs[GLOBAL_CTRL] = MSR_CORE_PERF_GLOBAL_CTRL;
	msrs[FIXED_CTR] = MSR_CORE_PERF_FIXED_CTR0;
	memcpy(steps, s->steps, sizeof(steps));
	nr_steps = s->nr;
	sync_global_to_guest(vm, msrs);
	sync_global_to_guest(vm, steps);
	sync_global_to_guest(vm, nr_steps);
	return vm;
}

/* Runs `s` on a fresh VM under `policy`; returns KVM's statistics of it. */
static struct outcome run(const struct sequence *s, const char *policy)
{
	struct outcome got = {};
	volatile bool stop = false;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	pthread_t spin_thread;
	struct ucall uc;

	write_file(PARAM_DIR "policy", policy);
	vm = create_vm(s, &vcpu);

	/* The vCPU shares CPU 0 with a spinner, so it is scheduled out. */
	pin_to_cpu0(pthread_self());
	TEST_ASSERT(!pthread_create(&spin_thread, NULL, spinner, (void *)&stop), "spinner");
	pin_to_cpu0(spin_thread);
	vcpu_run(vcpu);
	stop = true;
	pthread_join(spin_thread, NULL);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
	got.reprograms = vcpu_stat(vcpu, "pmu_reprograms");
	got.creates = vcpu_stat(vcpu, "pmu_event_creates");
	got.kept = vcpu_stat(vcpu, "pmu_events_kept");
	got.kept_at_exit = read_stat("kept_events");
	kvm_vm_free(vm);
	return got;
}

static void test_writes(void)
{
	static const char * const policies[] = { "legacy", "reuse", "cache" };
	static struct sequence seqs[11];
	const uint64_t a = 0x76 | USR | OS, b = 0xc0 | USR | OS, c = 0xc2 | USR | OS;
	const uint64_t on = GP_GLOBAL | FIXED0_GLOBAL, off = GP_GLOBAL;
	uint32_t i, p, nr_seqs;

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

	/*
	 * Small values written to the running counter, which has counted for
	 * a long gap.  KVM set the sample period from the counter's offset
	 * to the event's count instead of from the written value, so the
	 * event overflowed (and was reprogrammed) after about what it had
	 * counted: on Intel, whose legacy counter MSRs take 32-bit values
	 * sign-extended, counter_writes above did the same by chance.
	 */
	seqs[5].name = "running_writes";
	add(&seqs[5], SEL, a | EN, true);
	for (i = 0; i < 3; i++)
		add(&seqs[5], CTR, 1000 * (i + 1), 3);
	add(&seqs[5], SEL, a, false);
	nr_seqs = 6;

	if (has_fixed_counters()) {
		/* Fixed counter 0 enabled and disabled in GLOBAL_CTRL, as perf does. */
		seqs[6].name = "fixed_global_toggles";
		seqs[6].counters = FIXED0;
		add(&seqs[6], FIXED_CTRL, F_OS | F_USR | F_PMI, false);
		for (i = 0; i < 8; i++) {
			add(&seqs[6], GLOBAL_CTRL, on, true);
			add(&seqs[6], GLOBAL_CTRL, off, false);
		}
		/* Each field of FIXED_CTR_CTRL changed while the counter runs. */
		seqs[7].name = "fixed_field_changes";
		seqs[7].counters = FIXED0;
		add(&seqs[7], GLOBAL_CTRL, on, false);
		for (i = 0; i < 4; i++) {
			add(&seqs[7], FIXED_CTRL, F_OS | F_USR | F_PMI, false);
			add(&seqs[7], FIXED_CTRL, F_OS | F_PMI, false);
			add(&seqs[7], FIXED_CTRL, F_USR | F_PMI, false);
			add(&seqs[7], FIXED_CTRL, F_OS | F_USR, false);
		}
		add(&seqs[7], GLOBAL_CTRL, off, false);
		/* Both switches: the field off and on, GLOBAL_CTRL off and on. */
		seqs[8].name = "fixed_ctrl_and_global";
		seqs[8].counters = FIXED0;
		for (i = 0; i < 4; i++) {
			add(&seqs[8], FIXED_CTRL, F_OS | F_USR, false);
			add(&seqs[8], GLOBAL_CTRL, on, true);
			add(&seqs[8], FIXED_CTRL, 0, false);
			add(&seqs[8], FIXED_CTRL, F_OS | F_USR, false);
			add(&seqs[8], GLOBAL_CTRL, off, false);
			add(&seqs[8], FIXED_CTRL, 0, false);
		}
		/* running_writes for fixed counter 0. */
		seqs[9].name = "fixed_running_writes";
		seqs[9].counters = FIXED0;
		add(&seqs[9], FIXED_CTRL, F_OS | F_USR, false);
		add(&seqs[9], GLOBAL_CTRL, on, true);
		for (i = 0; i < 3; i++)
			add(&seqs[9], FIXED_CTR, 1000 * (i + 1), 3);
		add(&seqs[9], GLOBAL_CTRL, off, false);
		/*
		 * GP counter 0 and fixed counter 0 multiplexed together: both
		 * stopped and started through GLOBAL_CTRL (the other GP
		 * counters' bits left alone), GP counter 0 given the next of
		 * three configs while stopped, the fixed counter keeping its.
		 */
		seqs[10].name = "mux_gp_fixed";
		seqs[10].counters = GP0 | FIXED0;
		add(&seqs[10], FIXED_CTRL, F_OS | F_USR | F_PMI, false);
		for (i = 0; i < 9; i++) {
			const uint64_t cfg[] = { a, b, c };

			add(&seqs[10], GLOBAL_CTRL, off & ~BIT_ULL(0), false);
			add(&seqs[10], SEL, cfg[i % 3] | EN, false);
			add(&seqs[10], GLOBAL_CTRL, on, false);
		}
		add(&seqs[10], GLOBAL_CTRL, off & ~BIT_ULL(0), false);
		nr_seqs = 11;
	} else {
		ksft_print_msg("fixed-counter sequences not planned: the vCPU has no fixed counters (AMD)\n");
	}

	ksft_set_plan(nr_seqs * ARRAY_SIZE(policies));
	for (i = 0; i < nr_seqs; i++) {
		for (p = 0; p < ARRAY_SIZE(policies); p++) {
			struct outcome e = expect(&seqs[i], policies[p]);
			struct outcome got = run(&seqs[i], policies[p]);
			/*
			 * KVM releases the event of a counter left disabled
			 * and untouched from one sched-in of the vCPU to the
			 * next (its lazy cleanup); the spinner makes those
			 * frequent, and on a slow (KASAN) host one can fall
			 * within a short gap.  Under reuse the next enable then
			 * finds no event and creates where it would have
			 * resumed: at most one more create per resume after a
			 * disabled phase, as the sequence alone says.  Legacy
			 * creates either way; cache keeps what KVM would
			 * release, and is held to the exact count.
			 */
			uint64_t most = e.creates +
					(strcmp(policies[p], "reuse") ? 0 : e.lazy_max);

			ksft_print_msg("%s/%s: %u guest writes, reprograms %lu (expected %lu), creates %lu (expected %lu to %lu)\n",
				       seqs[i].name, policies[p], seqs[i].nr, got.reprograms,
				       e.reprograms, got.creates, e.creates, most);
			ksft_test_result(got.reprograms == e.reprograms &&
					 got.creates >= e.creates && got.creates <= most,
					 "%s_%s: exact reprograms, creates as the policy says\n",
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
	ksft_print_msg("idle: %lu reprograms, %lu creates, %lu kept, %lu still kept as the VM exits\n",
		       got.reprograms, got.creates, got.kept, got.kept_at_exit);
	ksft_test_result(got.kept > 0 && got.kept_at_exit == 0,
			 "idle: an idle vCPU keeps no events\n");
}

/* The references held on kvm_vpmu: the vendor module's in soft mode, vCPUs'. */
static uint64_t module_refs(void)
{
	return read_u64_file("/sys/module/kvm_vpmu/refcnt");
}

/*
 * Each vCPU pins kvm_vpmu from its first reprogram until it is destroyed,
 * so that KVM calls the backend without a read section of its own: two VMs
 * of one vCPU each add a reference once they ran, and drop it when freed.
 */
static void test_pin(void)
{
	struct sequence s = { .name = "pin" };
	uint64_t before, created, ran, one_freed, freed;
	struct kvm_vcpu *vcpu[2];
	struct kvm_vm *vm[2];
	struct ucall uc;
	int i;

	ksft_set_plan(1);
	add(&s, SEL, 0x76 | USR | OS | EN, false);
	add(&s, SEL, 0x76 | USR | OS, false);
	write_file(PARAM_DIR "policy", "reuse");
	before = module_refs();
	for (i = 0; i < 2; i++)
		vm[i] = create_vm(&s, &vcpu[i]);
	created = module_refs();
	for (i = 0; i < 2; i++) {
		vcpu_run(vcpu[i]);
		if (get_ucall(vcpu[i], &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
		TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
	}
	ran = module_refs();
	kvm_vm_free(vm[0]);
	one_freed = module_refs();
	kvm_vm_free(vm[1]);
	freed = module_refs();
	ksft_print_msg("pin: kvm_vpmu references %lu before, %lu with two VMs, %lu once their vCPUs reprogrammed, %lu with one freed, %lu after\n",
		       before, created, ran, one_freed, freed);
	ksft_test_result(created == before && ran == before + 2 &&
			 one_freed == before + 1 && freed == before,
			 "pin: a vCPU pins kvm_vpmu from its first reprogram until it is destroyed\n");
}

/*
 * The cost sequences: writes to GP counter event selects, the loop after
 * each, and how often the guest runs a sequence.  The first run creates
 * what the policy keeps; the cheapest of the others is reported.  Each
 * takes under 3 ms of guest time, less than the period of the host's
 * timer tick (4 ms at HZ=250): some runs take no tick, and the cheapest
 * is the sequence's own cost, whatever the tick's phase in this boot.
 */
#define COST_MAX_WRITES	640
#define COST_LOOP	32
#define COST_RUNS	7

static uint32_t cost_msr[COST_MAX_WRITES];
static uint64_t cost_val[COST_MAX_WRITES];
static uint32_t cost_nr;
/* Cycles of the loops alone (the cheapest of 3 runs), then of each run. */
static uint64_t cost_cycles[COST_RUNS + 1];

static void cost_loop(void)
{
	volatile uint32_t i;

	for (i = 0; i < COST_LOOP; i++)
		;
}

static void guest_cost_code(void)
{
	uint64_t start, loops;
	uint32_t run, i;

	/* The loops alone, as cheaply as they run: a tick may fall in one. */
	cost_cycles[0] = UINT64_MAX;
	for (run = 0; run < 3; run++) {
		start = rdtsc();
		for (i = 0; i < cost_nr; i++)
			cost_loop();
		loops = rdtsc() - start;
		if (loops < cost_cycles[0])
			cost_cycles[0] = loops;
	}
	for (run = 1; run <= COST_RUNS; run++) {
		start = rdtsc();
		for (i = 0; i < cost_nr; i++) {
			wrmsr(cost_msr[i], cost_val[i]);
			cost_loop();
		}
		cost_cycles[run] = rdtsc() - start;
	}
	GUEST_DONE();
}

struct cost_sequence {
	const char *name;
	/* Backend reprograms in all runs: every write but same_value's. */
	uint32_t reprograms;
	uint32_t nr;
	uint32_t counter[COST_MAX_WRITES];
	uint64_t val[COST_MAX_WRITES];
};

static void cost_add(struct cost_sequence *s, uint32_t counter, uint64_t val)
{
	TEST_ASSERT(s->nr < COST_MAX_WRITES, "cost sequence too long");
	s->counter[s->nr] = counter;
	s->val[s->nr++] = val;
}

/*
 * Runs `s` on a fresh VM under `label` (a policy, or "kvm" for KVM's own
 * path) and prints its cost per write; passes if the backend reprogrammed
 * exactly as often as it should (never under "kvm").
 */
static void cost_run(const struct cost_sequence *s, const char *label)
{
	const uint32_t sel0 = host_cpu_is_amd ? MSR_K7_EVNTSEL0 : MSR_P6_EVNTSEL0;
	bool kvm = !strcmp(label, "kvm");
	uint64_t reprograms, creates, per_write, best = UINT64_MAX;
	uint64_t backend_sets = 0;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint32_t i;

	/*
	 * KVM's own path is told from the backend's by cache's per-vCPU
	 * state, which the backend gives a vCPU at its first reprogram and
	 * KVM's code never does.
	 */
	write_file(PARAM_DIR "policy", kvm ? "cache" : label);
	vm = vm_create_with_one_vcpu(&vcpu, guest_cost_code);
	for (i = 0; i < s->nr; i++) {
		/* AMD's legacy event selects are consecutive, as Intel's. */
		cost_msr[i] = sel0 + s->counter[i];
		cost_val[i] = s->val[i];
	}
	cost_nr = s->nr;
	sync_global_to_guest(vm, cost_msr);
	sync_global_to_guest(vm, cost_val);
	sync_global_to_guest(vm, cost_nr);
	vcpu_run_until(vcpu, UCALL_DONE);
	sync_global_from_guest(vm, cost_cycles);
	reprograms = vcpu_stat(vcpu, "pmu_reprograms");
	creates = vcpu_stat(vcpu, "pmu_event_creates");
	if (kvm)
		backend_sets = read_stat("kept_vcpus");
	kvm_vm_free(vm);

	for (i = 2; i <= COST_RUNS; i++)
		best = min(best, cost_cycles[i]);
	per_write = (best - cost_cycles[0]) / s->nr;
	ksft_print_msg("cost/%s/%s: %u writes, cheapest of runs 2-%d %lu cycles, loops alone %lu, per write %lu cycles; reprograms %lu, creates %lu\n",
		       s->name, kvm ? "kvm_c" : label, s->nr, COST_RUNS, best,
		       cost_cycles[0], per_write, reprograms, creates);
	ksft_test_result(reprograms == s->reprograms && !backend_sets,
			 "cost_%s_%s: reprograms as written%s\n", s->name, kvm ? "kvm_c" : label,
			 kvm ? ", none by the backend" : "");
}

/*
 * The cost sequences, as the guest writes them: the same value again (no
 * reprogram), EN toggles of one config, USR/OS flips, and six configs
 * rotated over four counters as a multiplexing perf does.  @only: "kvm"
 * for KVM's own path, a policy for that one alone, or NULL for every
 * policy.
 */
static void test_cost(const char *only)
{
	static const char * const policies[] = { "legacy", "reuse", "cache" };
	bool kvm = only && !strcmp(only, "kvm");
	uint32_t nr_policies = ARRAY_SIZE(policies);
	static const uint64_t cfg[] = { 0x76, 0xc0, 0xc2, 0xc4, 0xc5, 0x7d };
	static struct cost_sequence seqs[4];
	const uint64_t a = 0x76 | USR | OS;
	uint64_t sel[4];
	uint32_t i, r, k, p;

	if (only && !kvm) {
		for (p = 0; p < ARRAY_SIZE(policies); p++)
			if (!strcmp(only, policies[p]))
				break;
		TEST_ASSERT(p < ARRAY_SIZE(policies),
			    "unknown \"cost %s\": kvm, legacy, reuse or cache", only);
		nr_policies = 1;
	}
	if (kvm) {
		char on[2] = {};
		int fd = open("/sys/module/kvm/parameters/vpmu_c_reference", O_RDONLY);

		TEST_ASSERT(fd >= 0 && read(fd, on, 1) == 1 && on[0] == 'Y',
			    "\"cost kvm\" needs kvm-c-reference.ko with vpmu_c_reference=1");
		close(fd);
	}

	seqs[0].name = "same_value";
	seqs[0].reprograms = 1;
	for (i = 0; i < 600; i++)
		cost_add(&seqs[0], 0, a | EN);
	seqs[1].name = "en_toggles";
	for (i = 0; i < 300; i++) {
		cost_add(&seqs[1], 0, a | EN);
		cost_add(&seqs[1], 0, a);
	}
	seqs[2].name = "usr_os_flips";
	for (i = 0; i < 100; i++) {
		cost_add(&seqs[2], 0, (a & ~USR) | EN);
		cost_add(&seqs[2], 0, (a & ~OS) | EN);
	}
	seqs[3].name = "rotation";
	/* Each rotation first disables what the one before enabled. */
	for (k = 0; k < 4; k++)
		sel[k] = cfg[(59 + k) % 6] | USR | OS;
	for (r = 0; r < 60; r++) {
		for (k = 0; k < 4; k++)
			cost_add(&seqs[3], k, sel[k]);
		for (k = 0; k < 4; k++) {
			sel[k] = cfg[(r + k) % 6] | USR | OS;
			cost_add(&seqs[3], k, sel[k] | EN);
		}
	}
	/* Every write of these changes an event select, in every run. */
	for (i = 1; i < ARRAY_SIZE(seqs); i++)
		seqs[i].reprograms = COST_RUNS * seqs[i].nr;

	ksft_set_plan(ARRAY_SIZE(seqs) * (kvm ? 1 : nr_policies));
	for (i = 0; i < ARRAY_SIZE(seqs); i++) {
		if (kvm) {
			cost_run(&seqs[i], "kvm");
			continue;
		}
		for (p = 0; p < ARRAY_SIZE(policies); p++)
			if (!only || !strcmp(only, policies[p]))
				cost_run(&seqs[i], policies[p]);
	}
}

/*
 * Two VMs' sequences, which differ in reprograms and creates: a rotation
 * of three configs with the counter disabled between them (48 writes),
 * and USR/OS flips of an enabled counter with a fourth config (32).
 */
static void concurrent_sequences(struct sequence seqs[2])
{
	const uint64_t a = 0x76 | USR | OS, b = 0xc0 | USR | OS, c = 0xc2 | USR | OS;
	const uint64_t cfg[] = { a, b, c };
	uint32_t i;

	seqs[0] = (struct sequence){ .name = "rotation" };
	seqs[1] = (struct sequence){ .name = "usr_os_flips" };
	for (i = 0; i < 24; i++) {
		add(&seqs[0], SEL, cfg[i % 3] | EN, false);
		add(&seqs[0], SEL, cfg[i % 3], false);
	}
	for (i = 0; i < 8; i++) {
		add(&seqs[1], SEL, a | EN, false);
		add(&seqs[1], SEL, (a & ~USR) | EN, false);
		add(&seqs[1], SEL, (a & ~OS) | EN, false);
		add(&seqs[1], SEL, b | EN, false);
	}
}

struct vm_run {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct pmu_stats stats;
};

static void *vm_thread(void *arg)
{
	struct vm_run *r = arg;

	vcpu_run_until(r->vcpu, UCALL_DONE);
	return NULL;
}

static bool same_counts(const struct pmu_stats *x, const struct pmu_stats *y)
{
	return x->reprograms == y->reprograms && x->creates == y->creates &&
	       x->resumes == y->resumes && x->create_failures == y->create_failures;
}

/*
 * Two VMs at once, each judged on its own: under cache the counts that do
 * not depend on when the vCPU is scheduled (reprograms, creates, resumes,
 * failed creates) are each VM's alone, and KVM's host-wide sums add up.
 */
static void test_concurrent(void)
{
	struct vm_run alone[2], both[2];
	struct sequence seqs[2];
	pthread_t threads[2];
	uint64_t sum_reprograms, sum_creates;
	uint32_t i;
	bool ok;

	ksft_set_plan(3);
	concurrent_sequences(seqs);
	write_file(PARAM_DIR "policy", "cache");
	for (i = 0; i < 2; i++) {
		alone[i].vm = create_vm(&seqs[i], &alone[i].vcpu);
		vm_thread(&alone[i]);
		alone[i].stats = vm_pmu_stats(alone[i].vm);
		kvm_vm_free(alone[i].vm);
	}
	for (i = 0; i < 2; i++)
		both[i].vm = create_vm(&seqs[i], &both[i].vcpu);
	for (i = 0; i < 2; i++)
		TEST_ASSERT(!pthread_create(&threads[i], NULL, vm_thread, &both[i]),
			    "pthread_create");
	for (i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	for (i = 0; i < 2; i++)
		both[i].stats = vm_pmu_stats(both[i].vm);
	sum_reprograms = kvm_sum("pmu_reprograms");
	sum_creates = kvm_sum("pmu_event_creates");
	for (i = 0; i < 2; i++)
		kvm_vm_free(both[i].vm);

	for (i = 0; i < 2; i++) {
		const struct pmu_stats *a = &alone[i].stats, *b = &both[i].stats;

		ksft_print_msg("concurrent/%s: alone reprograms %lu creates %lu resumes %lu releases %lu kept %lu adopted %lu evicted %lu; beside the other VM reprograms %lu creates %lu resumes %lu releases %lu kept %lu adopted %lu evicted %lu\n",
			       seqs[i].name, a->reprograms, a->creates, a->resumes,
			       a->releases, a->kept, a->adopted, a->evicted,
			       b->reprograms, b->creates, b->resumes, b->releases,
			       b->kept, b->adopted, b->evicted);
		ok = same_counts(a, b) && a->reprograms == seqs[i].nr && b->creates > 0;
		ksft_test_result(ok, "concurrent_%s: the VM's own counts, as alone\n", seqs[i].name);
	}
	ksft_print_msg("concurrent: KVM's host-wide sums reprograms %lu creates %lu\n",
		       sum_reprograms, sum_creates);
	/* Told apart only if the two VMs' counts differ. */
	ksft_test_result(sum_reprograms == both[0].stats.reprograms + both[1].stats.reprograms &&
			 sum_creates == both[0].stats.creates + both[1].stats.creates &&
			 both[0].stats.reprograms != both[1].stats.reprograms &&
			 both[0].stats.creates != both[1].stats.creates,
			 "concurrent: KVM's host-wide sums are the two VMs'\n");
}

#define TRACE_DIR	"/sys/kernel/tracing/"

/* Records of `decision` (" create ", " resume ", ...) in the trace. */
static uint64_t count_records(const char *trace, const char *decision)
{
	uint64_t n = 0;
	const char *p = trace;

	while ((p = strstr(p, "kvm_pmu_reprogram: "))) {
		const char *eol = strchrnul(p, '\n');
		const char *d = strstr(p, decision);

		if (d && d < eol)
			n++;
		p = eol;
	}
	return n;
}

/*
 * The tracepoint against the statistics: a sequence that creates, resumes
 * and adopts under cache, traced; each decision's records must add up to
 * the vCPU's counts.
 */
static void test_trace(void)
{
	struct sequence seqs[2];
	struct pmu_stats st;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t records, create, resume, adopt, adopt_paused, failed, kept;
	/* Not static: the test binary is loaded into every guest's memory. */
	const size_t size = 4 << 20;
	char *trace = malloc(size);
	ssize_t len = 0, r;
	int fd;

	TEST_ASSERT(access(TRACE_DIR "events/kvm/kvm_pmu_reprogram/enable", W_OK) == 0,
		    "no kvm_pmu_reprogram tracepoint in tracefs");
	ksft_set_plan(1);
	concurrent_sequences(seqs);
	write_file(PARAM_DIR "policy", "cache");
	write_file(TRACE_DIR "buffer_size_kb", "4096");
	write_file(TRACE_DIR "trace", "");
	write_file(TRACE_DIR "events/kvm/kvm_pmu_reprogram/enable", "1");
	vm = create_vm(&seqs[0], &vcpu);
	vcpu_run_until(vcpu, UCALL_DONE);
	st = vm_pmu_stats(vm);
	kvm_vm_free(vm);
	write_file(TRACE_DIR "events/kvm/kvm_pmu_reprogram/enable", "0");

	fd = open(TRACE_DIR "trace", O_RDONLY);
	TEST_ASSERT(fd >= 0, "open " TRACE_DIR "trace");
	TEST_ASSERT(trace, "out of memory");
	while ((r = read(fd, trace + len, size - 1 - len)) > 0)
		len += r;
	close(fd);
	trace[len] = 0;

	records = count_records(trace, "");
	create = count_records(trace, " create refused");
	failed = count_records(trace, " create_failed refused");
	resume = count_records(trace, " resume refused");
	adopt = count_records(trace, " adopt refused");
	adopt_paused = count_records(trace, " adopt_paused refused");
	kept = count_records(trace, " kept");
	ksft_print_msg("trace: %lu records: create %lu, create_failed %lu, resume %lu, adopt %lu, adopt_paused %lu, kept %lu; stats: reprograms %lu creates %lu failures %lu resumes %lu adopted %lu kept %lu\n",
		       records, create, failed, resume, adopt, adopt_paused, kept,
		       st.reprograms, st.creates, st.create_failures, st.resumes,
		       st.adopted, st.kept);
	/* Keeps at KVM's lazy cleanup are counted but not traced. */
	ksft_test_result(records == st.reprograms && records == seqs[0].nr &&
			 create == st.creates && failed == st.create_failures &&
			 resume + adopt + adopt_paused == st.resumes &&
			 adopt + adopt_paused == st.adopted && adopt > 0 &&
			 kept <= st.kept && kept > 0,
			 "trace: the tracepoint's records agree with KVM's counts\n");
	free(trace);
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
	else if (!strcmp(mode, "concurrent"))
		test_concurrent();
	else if (!strcmp(mode, "trace"))
		test_trace();
	else if (!strcmp(mode, "pin"))
		test_pin();
	else if (!strcmp(mode, "cost"))
		test_cost(argc > 2 ? argv[2] : NULL);
	else
		test_writes();
	write_file(PARAM_DIR "policy", "reuse");
	ksft_finished();
}
