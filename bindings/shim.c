// SPDX-License-Identifier: GPL-2.0
/*
 * C side of kvm_vpmu: what Rust cannot reach through bindgen (struct kvm_pmc
 * fields behind KVM's static inlines and macros, `current`, per-CPU data,
 * KVM's tracepoint), the module parameters that the kernel crate cannot
 * declare (those written at run time), the debugfs directory with fault
 * injection, and the backend KVM calls.  No decisions are made here.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/fault-inject.h>
#include <linux/kvm_host.h>
#include <linux/moduleparam.h>
#include <linux/percpu.h>
#include <linux/string.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>

#include "x86.h"
#include "pmu.h"
#include "trace.h"
#include "vpmu_bindings.h"

#define VPMU_STAT_AT(field, stat)					\
	static_assert(offsetof(struct kvm_vcpu_stat, field) -		\
		      offsetof(struct kvm_vcpu_stat, pmu_reprograms) ==	\
		      offsetof(struct vpmu_vcpu_stat, stat))
VPMU_STAT_AT(pmu_event_creates, event_creates);
VPMU_STAT_AT(pmu_event_create_failures, event_create_failures);
VPMU_STAT_AT(pmu_event_resumes, event_resumes);
VPMU_STAT_AT(pmu_event_releases, event_releases);
VPMU_STAT_AT(pmu_events_kept, events_kept);
VPMU_STAT_AT(pmu_events_adopted, events_adopted);
VPMU_STAT_AT(pmu_events_evicted, events_evicted);
static_assert(offsetof(struct kvm_vcpu_stat, pmu_events_evicted) + sizeof(u64) -
	      offsetof(struct kvm_vcpu_stat, pmu_reprograms) ==
	      sizeof(struct vpmu_vcpu_stat));

static_assert(VPMU_DECISION_IDLE == KVM_PMU_REPROGRAM_IDLE);
static_assert(VPMU_DECISION_RESUME == KVM_PMU_REPROGRAM_RESUME);
static_assert(VPMU_DECISION_ADOPT == KVM_PMU_REPROGRAM_ADOPT);
static_assert(VPMU_DECISION_ADOPT_PAUSED == KVM_PMU_REPROGRAM_ADOPT_PAUSED);
static_assert(VPMU_DECISION_CREATE == KVM_PMU_REPROGRAM_CREATE);
static_assert(VPMU_DECISION_CREATE_FAILED == KVM_PMU_REPROGRAM_CREATE_FAILED);
static_assert(VPMU_REFUSAL_NONE == KVM_PMU_RESUME_OK);
static_assert(VPMU_REFUSAL_NO_EVENT == KVM_PMU_RESUME_NO_EVENT);
static_assert(VPMU_REFUSAL_CONFIG_CHANGED == KVM_PMU_RESUME_CONFIG_CHANGED);
static_assert(VPMU_REFUSAL_PEBS_CHANGED == KVM_PMU_RESUME_PEBS_CHANGED);
static_assert(VPMU_REFUSAL_PERIOD_REFUSED == KVM_PMU_RESUME_PERIOD_REFUSED);
static_assert(VPMU_REFUSAL_POLICY == KVM_PMU_RESUME_POLICY);

/*
 * The parameters that may change while VMs run: module! takes only numeric
 * and bool parameters, with mode 0 (not in sysfs, so load time only) and
 * without set/get callbacks, and these need sysfs writes (0644), a string
 * (policy) and checks when written (enable in soft mode, cache_size's
 * bound).
 */
static bool enable = true;

static int enable_set(const char *val, const struct kernel_param *kp)
{
	bool on;
	int r = kstrtobool(val, &on);

	if (r)
		return r;
	/* KVM's own code creates hardware events, which this host lacks. */
	if (!on && kvm_vpmu_soft_active()) {
		pr_err("enable=0 refused in soft mode: KVM cannot back guest counters without a PMU\n");
		return -EINVAL;
	}
	WRITE_ONCE(enable, on);
	return 0;
}

static const struct kernel_param_ops enable_ops = {
	.set = enable_set,
	.get = param_get_bool,
};
module_param_cb(enable, &enable_ops, &enable, 0644);
MODULE_PARM_DESC(enable, "Take over vPMC reprogramming (default: on)");

static const char * const policy_names[] = {
	[VPMU_POLICY_LEGACY] = "legacy",
	[VPMU_POLICY_REUSE] = "reuse",
	[VPMU_POLICY_CACHE] = "cache",
};

static_assert(ARRAY_SIZE(policy_names) == NR_VPMU_POLICIES);

static enum vpmu_policy policy = VPMU_POLICY_REUSE;

static int policy_set(const char *val, const struct kernel_param *kp)
{
	int p = sysfs_match_string(policy_names, val);

	if (p < 0) {
		pr_err("unknown policy '%.*s': use legacy, reuse or cache\n",
		       (int)strcspn(val, "\n"), val);
		return -EINVAL;
	}
	WRITE_ONCE(policy, p);
	return 0;
}

static int policy_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", policy_names[READ_ONCE(policy)]);
}

static const struct kernel_param_ops policy_ops = {
	.set = policy_set,
	.get = policy_get,
};
module_param_cb(policy, &policy_ops, NULL, 0644);
MODULE_PARM_DESC(policy, "Reprogram policy: legacy, reuse or cache (default: reuse)");

static unsigned int cache_size;

static int cache_size_set(const char *val, const struct kernel_param *kp)
{
	int r = param_set_uint_minmax(val, kp, 0, VPMU_KEPT_MAX);

	if (r)
		pr_err("cache_size must be 0 (the default bound) to %d\n",
		       VPMU_KEPT_MAX);
	return r;
}

static const struct kernel_param_ops cache_size_ops = {
	.set = cache_size_set,
	.get = param_get_uint,
};
module_param_cb(cache_size, &cache_size_ops, &cache_size, 0644);
MODULE_PARM_DESC(cache_size, "cache policy: events kept per vCPU, at most 64 (default 0: three times the vCPU's counters plus one)");

#ifdef CONFIG_KVM_VPMU_SOFT
/* A test facility: a load-time bool as module! would declare it, mode 0. */
static bool soft;
module_param(soft, bool, 0);
MODULE_PARM_DESC(soft, "Testing without a host PMU: emulate one; load before kvm-amd/kvm-intel");

bool vpmu_param_soft(void)
{
	return soft;
}
#endif

enum vpmu_policy vpmu_param_policy(void)
{
	return READ_ONCE(policy);
}

const char *vpmu_param_policy_name(void)
{
	return policy_names[READ_ONCE(policy)];
}

unsigned int vpmu_param_cache_size(void)
{
	return READ_ONCE(cache_size);
}

#ifdef CONFIG_FAULT_INJECTION
/* debugfs kvm_vpmu/fail_create/: see Documentation/fault-injection/. */
static DECLARE_FAULT_ATTR(vpmu_fail_create);
static atomic_t vpmu_injected_failures;

bool vpmu_should_fail_create(void)
{
	if (!should_fail(&vpmu_fail_create, 1))
		return false;
	atomic_inc(&vpmu_injected_failures);
	return true;
}
#else
bool vpmu_should_fail_create(void)
{
	return false;
}
#endif

u32 vpmu_vcpu_nr_counters(struct kvm_vcpu *vcpu)
{
	struct kvm_pmu *pmu = vcpu_to_pmu(vcpu);

	return pmu->nr_arch_gp_counters + pmu->nr_arch_fixed_counters;
}

void *vpmu_vcpu_backend_priv(struct kvm_vcpu *vcpu)
{
	return vcpu_to_pmu(vcpu)->backend_priv;
}

struct vpmu_vcpu_stat *vpmu_vcpu_stat(struct kvm_vcpu *vcpu)
{
	return (struct vpmu_vcpu_stat *)&vcpu->stat.pmu_reprograms;
}

/*
 * The next vPMC of @vcpu from index *idx on, with @paused_only the next that
 * holds a paused event; *idx moves past it.
 */
struct kvm_pmc *vpmu_vcpu_next_pmc(struct kvm_vcpu *vcpu, u32 *idx,
				   bool paused_only)
{
	struct kvm_pmu *pmu = vcpu_to_pmu(vcpu);
	struct kvm_pmc *pmc;

	for (; *idx < X86_PMC_IDX_MAX; (*idx)++) {
		if (!test_bit(*idx, pmu->all_valid_pmc_idx))
			continue;
		pmc = kvm_pmc_idx_to_pmc(pmu, *idx);
		if (pmc && (!paused_only ||
			    (pmc->perf_event && pmc->is_paused))) {
			(*idx)++;
			return pmc;
		}
	}
	return NULL;
}

/* The vPMC of @vcpu with index @idx, or NULL. */
struct kvm_pmc *vpmu_vcpu_pmc(struct kvm_vcpu *vcpu, u32 idx)
{
	struct kvm_pmu *pmu = vcpu_to_pmu(vcpu);

	if (idx >= X86_PMC_IDX_MAX || !test_bit(idx, pmu->all_valid_pmc_idx))
		return NULL;
	return kvm_pmc_idx_to_pmc(pmu, idx);
}

void *vpmu_event_context(struct perf_event *event)
{
	return event->overflow_handler_context;
}

/* The host has TSX: set when the backend registers, the same every time. */
static bool vpmu_host_tsx __read_mostly;

void vpmu_pmc_snapshot(struct kvm_pmc *pmc, struct vpmu_pmc_snapshot *snap)
{
	struct kvm_pmu *pmu = pmc_to_pmu(pmc);
	struct perf_event *event = pmc->perf_event;
	struct vpmu_pmc_config *cfg = &snap->cfg;
	struct vpmu_pmc_state *state = &snap->state;

	cfg->eventsel = pmc->eventsel;
	cfg->mask = pmc_bitmask(pmc);
	cfg->raw_event_mask = pmu->raw_event_mask;
	cfg->fixed_ctrl = pmc_is_fixed(pmc) ?
		fixed_ctrl_field(pmu->fixed_ctr_ctrl,
				 pmc->idx - KVM_FIXED_PMC_BASE_IDX) : 0;
	cfg->globally_enabled = pmc_is_globally_enabled(pmc);
	cfg->pebs_enabled = test_bit(pmc->idx,
				     (unsigned long *)&pmu->pebs_enable);
	cfg->host_tsx = vpmu_host_tsx;
	state->counter = pmc->counter;
	state->emulated_counter = pmc->emulated_counter;
	state->current_config = pmc->current_config;
	state->is_paused = pmc->is_paused;
	state->intr = pmc->intr;
	snap->vcpu = pmc->vcpu;
	snap->event = event;
	snap->backend_priv = pmu->backend_priv;
	snap->stat = vpmu_vcpu_stat(pmc->vcpu);
	snap->idx = pmc->idx;
	snap->sampling = event && is_sampling_event(event);
	snap->precise = event && event->attr.precise_ip;
}

/* The guest accessed @pmc in the time slice that ended (KVM's lazy cleanup). */
bool vpmu_pmc_in_use(struct kvm_pmc *pmc)
{
	return test_bit(pmc->idx, pmc_to_pmu(pmc)->pmc_in_use);
}

void vpmu_pmc_update(struct kvm_pmc *pmc, const struct vpmu_pmc_state *state,
		     u8 decision, u8 refusal, bool kept)
{
	pmc->counter = state->counter;
	pmc->emulated_counter = 0;
	pmc->current_config = state->current_config;
	pmc->is_paused = state->is_paused;
	pmc->intr = state->intr;
	trace_kvm_pmu_reprogram(pmc->vcpu->vcpu_id, pmc->idx,
				state->current_config, decision, refusal,
				kept);
}

/*
 * A pinned kernel counter on the current task, in *@event; 0 or perf's
 * errno.  Built here because GCC zeroes the rest of struct perf_event_attr
 * in place, where Rust calls memset() and copies it (about 100 instructions
 * per create), and returning the errno spares Rust the error pointer's
 * out-of-line helpers.
 */
int vpmu_perf_event_create(const struct vpmu_perf_attr *a,
			   perf_overflow_handler_t handler, void *context,
			   struct perf_event **event)
{
	struct perf_event_attr attr = {
		.type = a->type,
		.size = sizeof(attr),
		.config = a->config,
		.sample_period = a->sample_period,
		.pinned = true,
		.exclude_user = a->exclude_user,
		.exclude_kernel = a->exclude_kernel,
		.exclude_idle = a->exclude_idle,
		.exclude_host = a->exclude_host,
		.precise_ip = a->precise_ip,
	};
	struct perf_event *e;

	e = perf_event_create_kernel_counter(&attr, -1, current, handler,
					     context);
	if (IS_ERR(e))
		return PTR_ERR(e);
	*event = e;
	return 0;
}

u64 vpmu_current_run_time_ns(void)
{
	return current->se.sum_exec_runtime;
}

u64 vpmu_rdtsc(void)
{
	return rdtsc_ordered();
}

#ifdef CONFIG_KVM_VPMU_SOFT
/* Soft mode's questions: whether to emulate a PMU, and which vendor's. */
bool vpmu_host_has_pmu(void)
{
	struct x86_pmu_capability cap;

	perf_get_x86_pmu_capability(&cap);
	return cap.num_counters_gp > 0;
}

bool vpmu_host_is_intel(void)
{
	return boot_cpu_data.x86_vendor == X86_VENDOR_INTEL;
}
#endif

/*
 * Whether KVM runs its mediated vPMU (the vendor module's
 * enable_mediated_pmu, which KVM clears on a host PMU that cannot be
 * mediated).  Then every vCPU with a PMU is mediated and KVM never calls
 * this backend.
 */
bool vpmu_kvm_mediated_pmu(void)
{
	return READ_ONCE(enable_mediated_pmu);
}

static int vpmu_backend_reprogram(struct kvm_pmc *pmc)
{
	if (!READ_ONCE(enable))
		return KVM_PMU_BACKEND_DECLINED;
	return kvm_vpmu_reprogram(pmc, READ_ONCE(policy));
}

static void vpmu_backend_vcpu_cleanup(struct kvm_vcpu *vcpu)
{
	kvm_vpmu_vcpu_cleanup(vcpu, READ_ONCE(enable));
}

static const struct kvm_pmu_backend vpmu_backend = {
	.reprogram = vpmu_backend_reprogram,
#ifdef CONFIG_KVM_VPMU_SOFT
	.host_capability = kvm_vpmu_host_capability,
#endif
	.vcpu_cleanup = vpmu_backend_vcpu_cleanup,
	.vcpu_destroy = kvm_vpmu_vcpu_destroy,
	.owner = THIS_MODULE,
};

int vpmu_backend_register(void)
{
	vpmu_host_tsx = boot_cpu_has(X86_FEATURE_RTM) ||
			boot_cpu_has(X86_FEATURE_HLE);
	return kvm_pmu_register_backend(&vpmu_backend);
}

void vpmu_backend_unregister(void)
{
	kvm_pmu_unregister_backend(&vpmu_backend);
}

/*
 * The cache policy's kept events over all vCPUs, for debugfs: per CPU, so
 * that keeping an event touches no cache line shared between vCPUs.  The
 * sum is exact once no vCPU is changing its set; the high-water mark is
 * the most events one vCPU held at once.
 */
static DEFINE_PER_CPU(s64, vpmu_kept_events);
static DEFINE_PER_CPU(u32, vpmu_kept_max);
static atomic_t vpmu_kept_vcpus;

/* A vCPU's set changed by @delta events, and holds @held now. */
void vpmu_kept_account(s64 delta, u32 held)
{
	u32 *max = get_cpu_ptr(&vpmu_kept_max);

	__this_cpu_add(vpmu_kept_events, delta);
	if (held > *max)
		*max = held;
	put_cpu_ptr(&vpmu_kept_max);
}

/* A vCPU's kept-event state was made (1) or freed (-1). */
void vpmu_kept_sets_account(int delta)
{
	atomic_add(delta, &vpmu_kept_vcpus);
}

static int vpmu_kept_events_get(void *data, u64 *val)
{
	s64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu(vpmu_kept_events, cpu);
	*val = max_t(s64, sum, 0);
	return 0;
}

static int vpmu_kept_max_get(void *data, u64 *val)
{
	u32 most = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		most = max(most, per_cpu(vpmu_kept_max, cpu));
	*val = most;
	return 0;
}

/* Writing 0 starts the high-water mark again (tests, an operator). */
static int vpmu_kept_max_set(void *data, u64 val)
{
	int cpu;

	if (val)
		return -EINVAL;
	for_each_possible_cpu(cpu)
		per_cpu(vpmu_kept_max, cpu) = 0;
	return 0;
}

static int vpmu_kept_vcpus_get(void *data, u64 *val)
{
	*val = atomic_read(&vpmu_kept_vcpus);
	return 0;
}

static int vpmu_mediated_pmu_get(void *data, u64 *val)
{
	*val = vpmu_kvm_mediated_pmu();
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(vpmu_kept_events_fops, vpmu_kept_events_get, NULL, "%llu\n");
DEFINE_DEBUGFS_ATTRIBUTE(vpmu_kept_max_fops, vpmu_kept_max_get, vpmu_kept_max_set, "%llu\n");
DEFINE_DEBUGFS_ATTRIBUTE(vpmu_kept_vcpus_fops, vpmu_kept_vcpus_get, NULL, "%llu\n");
DEFINE_DEBUGFS_ATTRIBUTE(vpmu_mediated_pmu_fops, vpmu_mediated_pmu_get, NULL, "%llu\n");

/*
 * /sys/kernel/debug/kvm_vpmu/: what is not per vCPU (the per-vCPU counts
 * are KVM's, in its stats).  In C because the kernel crate has no fault
 * injection, whose attributes are part of this directory.
 */
static struct dentry *vpmu_debugfs_dir;

void vpmu_debugfs_init(void)
{
	struct dentry *dir = debugfs_create_dir(KBUILD_MODNAME, NULL);

	vpmu_debugfs_dir = dir;
	debugfs_create_file_unsafe("kept_events", 0444, dir, NULL,
				   &vpmu_kept_events_fops);
	debugfs_create_file_unsafe("kept_vcpus", 0444, dir, NULL,
				   &vpmu_kept_vcpus_fops);
	debugfs_create_file_unsafe("kept_max", 0644, dir, NULL,
				   &vpmu_kept_max_fops);
	debugfs_create_file_unsafe("mediated_pmu", 0444, dir, NULL,
				   &vpmu_mediated_pmu_fops);
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	debugfs_create_atomic_t("injected_failures", 0444, dir,
				&vpmu_injected_failures);
	fault_create_debugfs_attr("fail_create", dir, &vpmu_fail_create);
#endif
}

void vpmu_debugfs_exit(void)
{
	debugfs_remove_recursive(vpmu_debugfs_dir);
}
