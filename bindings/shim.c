// SPDX-License-Identifier: GPL-2.0
/*
 * C side of kvm_vpmu: what Rust cannot reach through bindgen (struct kvm_pmc
 * fields behind KVM's static inlines and macros, `current`), the module
 * parameters and the debugfs files that the kernel crate cannot make (all
 * of them on 6.12; on 7.3 the run-time parameters), fault injection and the
 * backend KVM calls.  No decisions are made here.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/fault-inject.h>
#include <linux/kvm_host.h>
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>

#include "x86.h"
#include "pmu.h"
#include "vpmu_bindings.h"

/* Rust's module! has no spelling of the author common to 6.12 and 7.3. */
MODULE_AUTHOR("kvm-vpmu developers");

/* 6.18 renamed pmc_speculative_in_use() (see Kbuild). */
#ifndef VPMU_KVER_GE_6_18
#define pmc_is_locally_enabled pmc_speculative_in_use
#endif

/*
 * The parameters that may change while VMs run stay here on both kernels:
 * 7.3's module! takes only numeric and bool parameters, with mode 0 (not in
 * sysfs, so load time only) and without set/get callbacks, and these need
 * sysfs writes (0644), a string (policy) and checks when written (enable in
 * soft mode, cache_size's bound).
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

#ifndef VPMU_KVER_GE_6_18
/*
 * The load-time parameters, where Rust's module! cannot declare them (6.12);
 * on 7.3 src/kvm_vpmu.rs does, with the same names, types and descriptions, and
 * as there they are not in sysfs (mode 0).  Declared last and in this order
 * because GCC emits a file's modinfo strings last to first: modinfo then
 * lists the parameters in the same order on both kernels.
 */
static bool selftest;
module_param(selftest, bool, 0);
MODULE_PARM_DESC(selftest, "Run the KTAP self-test at load; fail the load if it fails");

static bool soft;
module_param(soft, bool, 0);
MODULE_PARM_DESC(soft, "On hosts without a PMU, emulate one with task-clock events (load before kvm-amd/kvm-intel)");

bool vpmu_param_soft(void)
{
	return soft;
}

bool vpmu_param_selftest(void)
{
	return selftest;
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

bool vpmu_should_fail_create(void)
{
	return should_fail(&vpmu_fail_create, 1);
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

/*
 * How many events KVM's lazy cleanup releases once the backend's
 * vcpu_cleanup() returns: those of the vPMCs the guest did not use in the
 * time slice that ended and has not enabled (kvm_pmu_cleanup()'s loop).
 */
u32 vpmu_vcpu_nr_cleanup_releases(struct kvm_vcpu *vcpu)
{
	struct kvm_pmu *pmu = vcpu_to_pmu(vcpu);
	struct kvm_pmc *pmc;
	u32 n = 0;
	int i;

	for_each_set_bit(i, pmu->all_valid_pmc_idx, X86_PMC_IDX_MAX) {
		if (test_bit(i, pmu->pmc_in_use))
			continue;
		pmc = kvm_pmc_idx_to_pmc(pmu, i);
		if (pmc && pmc->perf_event && !pmc_is_locally_enabled(pmc))
			n++;
	}
	return n;
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

void vpmu_pmc_snapshot(struct kvm_pmc *pmc, struct vpmu_pmc_snapshot *snap)
{
	struct kvm_pmu *pmu = pmc_to_pmu(pmc);
	struct perf_event *event = pmc->perf_event;

	snap->vcpu = pmc->vcpu;
	snap->event = event;
	snap->eventsel = pmc->eventsel;
	snap->mask = pmc_bitmask(pmc);
	snap->raw_event_mask = pmu->raw_event_mask;
	snap->counter = pmc->counter;
	snap->emulated_counter = pmc->emulated_counter;
	snap->current_config = pmc->current_config;
	snap->idx = pmc->idx;
	snap->is_fixed = pmc_is_fixed(pmc);
	snap->fixed_ctrl = snap->is_fixed ?
		fixed_ctrl_field(pmu->fixed_ctr_ctrl,
				 pmc->idx - KVM_FIXED_PMC_BASE_IDX) : 0;
	snap->globally_enabled = pmc_is_globally_enabled(pmc);
	snap->pebs_enabled = test_bit(pmc->idx,
				      (unsigned long *)&pmu->pebs_enable);
	snap->is_paused = pmc->is_paused;
	snap->intr = pmc->intr;
	snap->has_event = event;
	snap->sampling = event && is_sampling_event(event);
	snap->precise = event && event->attr.precise_ip;
	snap->host_tsx = boot_cpu_has(X86_FEATURE_RTM) ||
			 boot_cpu_has(X86_FEATURE_HLE);
	snap->in_use = test_bit(pmc->idx, pmu->pmc_in_use);
	snap->backend_priv = pmu->backend_priv;
	snap->nr_counters = pmu->nr_arch_gp_counters + pmu->nr_arch_fixed_counters;
}

void vpmu_pmc_update(struct kvm_pmc *pmc, const struct vpmu_pmc_update *upd)
{
	pmc->counter = upd->counter;
	pmc->emulated_counter = 0;
	pmc->current_config = upd->current_config;
	pmc->is_paused = upd->is_paused;
	pmc->intr = upd->intr;
}

struct task_struct *vpmu_current(void)
{
	return current;
}

u64 vpmu_current_run_time_ns(void)
{
	return current->se.sum_exec_runtime;
}

u64 vpmu_rdtsc(void)
{
	return rdtsc_ordered();
}

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

/*
 * Whether KVM runs its mediated vPMU (7.0: the vendor module's
 * enable_mediated_pmu, which KVM clears on a host PMU that cannot be
 * mediated).  Then every vCPU with a PMU is mediated and KVM never calls
 * this backend.
 */
bool vpmu_kvm_mediated_pmu(void)
{
#ifdef VPMU_KVER_GE_7_0
	return READ_ONCE(enable_mediated_pmu);
#else
	return false;
#endif
}

static int vpmu_backend_reprogram(struct kvm_pmc *pmc)
{
	if (!READ_ONCE(enable))
		return KVM_PMU_BACKEND_DECLINED;
	return kvm_vpmu_reprogram(pmc);
}

static void vpmu_backend_vcpu_cleanup(struct kvm_vcpu *vcpu)
{
	kvm_vpmu_vcpu_cleanup(vcpu, READ_ONCE(enable));
}

static const struct kvm_pmu_backend vpmu_backend = {
	.reprogram = vpmu_backend_reprogram,
	.host_capability = kvm_vpmu_host_capability,
	.vcpu_cleanup = vpmu_backend_vcpu_cleanup,
	.vcpu_destroy = kvm_vpmu_vcpu_destroy,
	.owner = THIS_MODULE,
};

int vpmu_backend_register(void)
{
	return kvm_pmu_register_backend(&vpmu_backend);
}

void vpmu_backend_unregister(void)
{
	kvm_pmu_unregister_backend(&vpmu_backend);
}

/*
 * fail_create/ inside kvm_vpmu/ in debugfs, wherever the directory was made:
 * the kernel crate's debugfs (7.3) does not hand out its dentry, and has no
 * fault injection, so the directory is looked up by its name.  Removed with
 * the directory.
 */
void vpmu_debugfs_fail_create(void)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	struct dentry *dir = debugfs_lookup(KBUILD_MODNAME, NULL);

	if (IS_ERR_OR_NULL(dir))
		return;
	fault_create_debugfs_attr("fail_create", dir, &vpmu_fail_create);
	dput(dir);
#endif
}

#ifndef VPMU_KVER_GE_6_18
/* The statistics files; on 7.3 src/debugfs.rs makes the same ones. */
static struct dentry *vpmu_debugfs_dir;

static int vpmu_stat_get(void *data, u64 *val)
{
	*val = kvm_vpmu_stat_read((uintptr_t)data);
	return 0;
}

static int vpmu_stat_set(void *data, u64 val)
{
	if (val)
		return -EINVAL;
	kvm_vpmu_stat_clear((uintptr_t)data);
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(vpmu_stat_fops, vpmu_stat_get, vpmu_stat_set, "%llu\n");

static int vpmu_gauge_get(void *data, u64 *val)
{
	u64 (*read)(void) = data;

	*val = read();
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(vpmu_gauge_fops, vpmu_gauge_get, NULL, "%llu\n");

static u64 vpmu_mediated_pmu_gauge(void)
{
	return vpmu_kvm_mediated_pmu();
}

static int vpmu_reset_set(void *data, u64 val)
{
	u32 i;

	for (i = 0; i < kvm_vpmu_nr_stats(); i++)
		kvm_vpmu_stat_clear(i);
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(vpmu_reset_fops, NULL, vpmu_reset_set, "%llu\n");

void vpmu_debugfs_init(void)
{
	u32 i;

	vpmu_debugfs_dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	for (i = 0; i < kvm_vpmu_nr_stats(); i++)
		debugfs_create_file_unsafe(kvm_vpmu_stat_name(i), 0644,
					   vpmu_debugfs_dir, (void *)(uintptr_t)i,
					   &vpmu_stat_fops);
	debugfs_create_file_unsafe("kept_events", 0444, vpmu_debugfs_dir,
				   kvm_vpmu_kept_events, &vpmu_gauge_fops);
	debugfs_create_file_unsafe("kept_vcpus", 0444, vpmu_debugfs_dir,
				   kvm_vpmu_kept_vcpus, &vpmu_gauge_fops);
	debugfs_create_file_unsafe("kept_max", 0444, vpmu_debugfs_dir,
				   kvm_vpmu_kept_max, &vpmu_gauge_fops);
	debugfs_create_file_unsafe("mediated_pmu", 0444, vpmu_debugfs_dir,
				   vpmu_mediated_pmu_gauge, &vpmu_gauge_fops);
	debugfs_create_file_unsafe("reset", 0200, vpmu_debugfs_dir, NULL,
				   &vpmu_reset_fops);
	vpmu_debugfs_fail_create();
}

void vpmu_debugfs_exit(void)
{
	debugfs_remove_recursive(vpmu_debugfs_dir);
}
#endif
