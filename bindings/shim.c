// SPDX-License-Identifier: GPL-2.0
/*
 * C side of kvm_vpmu: what Rust cannot reach through bindgen (struct kvm_pmc
 * fields behind KVM's static inlines and macros, `current`, IS_ERR), the
 * module parameters and the debugfs files.  No decisions are made here.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/kthread.h>
#include <linux/kvm_host.h>
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>

#include "x86.h"
#include "pmu.h"
#include "vpmu_bindings.h"

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

static int policy = VPMU_POLICY_DEFAULT;

static int policy_set(const char *val, const struct kernel_param *kp)
{
	int p = kvm_vpmu_policy_parse(val, strlen(val));

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
	return sysfs_emit(buf, "%s\n", kvm_vpmu_policy_name(READ_ONCE(policy)));
}

static const struct kernel_param_ops policy_ops = {
	.set = policy_set,
	.get = policy_get,
};
module_param_cb(policy, &policy_ops, NULL, 0644);
MODULE_PARM_DESC(policy, "Reprogram policy: legacy, reuse or cache (default: reuse)");

static bool soft;
module_param(soft, bool, 0444);
MODULE_PARM_DESC(soft, "On hosts without a PMU, emulate one with task-clock events (load before kvm-amd/kvm-intel)");

static unsigned int cache_size;
module_param(cache_size, uint, 0644);
MODULE_PARM_DESC(cache_size, "cache policy: events kept per vCPU (default 0: twice the vCPU's counters plus one)");

static bool selftest;
module_param(selftest, bool, 0444);
MODULE_PARM_DESC(selftest, "Run the KTAP self-test at load; fail the load if it fails");

int vpmu_param_policy(void)
{
	return READ_ONCE(policy);
}

bool vpmu_param_selftest(void)
{
	return selftest;
}

bool vpmu_param_soft(void)
{
	return soft;
}

unsigned int vpmu_param_cache_size(void)
{
	return READ_ONCE(cache_size);
}

struct kvm_vcpu *vpmu_pmc_vcpu(struct kvm_pmc *pmc)
{
	return pmc->vcpu;
}

u32 vpmu_pmc_nr_counters(struct kvm_pmc *pmc)
{
	struct kvm_pmu *pmu = pmc_to_pmu(pmc);

	return pmu->nr_arch_gp_counters + pmu->nr_arch_fixed_counters;
}

/* Whether the guest used any counter in the time slice that ended. */
bool vpmu_vcpu_pmu_in_use(struct kvm_vcpu *vcpu)
{
	return !bitmap_empty(vcpu_to_pmu(vcpu)->pmc_in_use, X86_PMC_IDX_MAX);
}

void vpmu_event_info(struct perf_event *event, bool *sampling, bool *precise)
{
	*sampling = is_sampling_event(event);
	*precise = event->attr.precise_ip;
}

void vpmu_event_retarget(struct perf_event *event, struct kvm_pmc *pmc)
{
	WRITE_ONCE(event->overflow_handler_context, pmc);
}

/* Serializes the kept-event table of src/kept.rs. */
static DEFINE_MUTEX(vpmu_kept_mutex);

void vpmu_kept_lock(void)
{
	mutex_lock(&vpmu_kept_mutex);
}

void vpmu_kept_unlock(void)
{
	mutex_unlock(&vpmu_kept_mutex);
}

void vpmu_pmc_snapshot(struct kvm_pmc *pmc, struct vpmu_pmc_snapshot *snap)
{
	struct kvm_pmu *pmu = pmc_to_pmu(pmc);
	struct perf_event *event = pmc->perf_event;

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
	snap->filter_allows = kvm_pmc_event_filter_allows(pmc);
	snap->pebs_enabled = test_bit(pmc->idx,
				      (unsigned long *)&pmu->pebs_enable);
	snap->is_paused = pmc->is_paused;
	snap->intr = pmc->intr;
	snap->has_event = event;
	snap->sampling = event && is_sampling_event(event);
	snap->precise = event && event->attr.precise_ip;
}

void vpmu_pmc_update(struct kvm_pmc *pmc, const struct vpmu_pmc_update *upd)
{
	pmc->counter = upd->counter;
	pmc->emulated_counter = 0;
	pmc->current_config = upd->current_config;
	pmc->is_paused = upd->is_paused;
	pmc->intr = upd->intr;
}

struct perf_event *vpmu_pmc_perf_event(struct kvm_pmc *pmc)
{
	return pmc->perf_event;
}

struct task_struct *vpmu_current(void)
{
	return current;
}

bool vpmu_is_err(const void *ptr)
{
	return IS_ERR(ptr);
}

long vpmu_ptr_err(const void *ptr)
{
	return PTR_ERR(ptr);
}

u64 vpmu_rdtsc(void)
{
	return rdtsc_ordered();
}

bool vpmu_host_has_tsx(void)
{
	return boot_cpu_has(X86_FEATURE_RTM) || boot_cpu_has(X86_FEATURE_HLE);
}

bool vpmu_host_has_pmu(void)
{
	struct x86_pmu_capability cap;

	perf_get_x86_pmu_capability(&cap);
	return cap.num_counters_gp > 0;
}

/*
 * Context-switch partner for the self-test: a kthread on the caller's CPU
 * that answers each ping with a pong, so a round trip of the pinned caller
 * is two context switches.
 */
static struct completion vpmu_ping, vpmu_pong;

static int vpmu_ponger(void *unused)
{
	while (!kthread_should_stop()) {
		/* The timeout lets kthread_stop() be noticed. */
		if (wait_for_completion_timeout(&vpmu_ping, msecs_to_jiffies(10)))
			complete(&vpmu_pong);
	}
	return 0;
}

static cpumask_var_t vpmu_saved_mask;

struct task_struct *vpmu_ctxsw_start(void)
{
	struct task_struct *partner;
	int cpu;

	if (!alloc_cpumask_var(&vpmu_saved_mask, GFP_KERNEL))
		return NULL;
	cpumask_copy(vpmu_saved_mask, current->cpus_ptr);
	cpu = get_cpu();
	put_cpu();
	if (set_cpus_allowed_ptr(current, cpumask_of(cpu)))
		goto free;
	init_completion(&vpmu_ping);
	init_completion(&vpmu_pong);
	partner = kthread_create_on_cpu(vpmu_ponger, NULL, cpu, "vpmu_pong/%u");
	if (IS_ERR(partner))
		goto restore;
	wake_up_process(partner);
	return partner;
restore:
	set_cpus_allowed_ptr(current, vpmu_saved_mask);
free:
	free_cpumask_var(vpmu_saved_mask);
	return NULL;
}

void vpmu_ctxsw_round_trip(void)
{
	complete(&vpmu_ping);
	wait_for_completion(&vpmu_pong);
}

void vpmu_ctxsw_stop(struct task_struct *partner)
{
	kthread_stop(partner);
	set_cpus_allowed_ptr(current, vpmu_saved_mask);
	free_cpumask_var(vpmu_saved_mask);
}

static int vpmu_backend_reprogram(struct kvm_pmc *pmc)
{
	if (!READ_ONCE(enable))
		return KVM_PMU_BACKEND_DECLINED;
	return kvm_vpmu_reprogram(pmc);
}

static const struct kvm_pmu_backend vpmu_backend = {
	.reprogram = vpmu_backend_reprogram,
	.host_capability = kvm_vpmu_host_capability,
	.vcpu_cleanup = kvm_vpmu_vcpu_cleanup,
	.vcpu_destroy = kvm_vpmu_vcpu_destroy,
};

int vpmu_backend_register(void)
{
	return kvm_pmu_register_backend(&vpmu_backend);
}

void vpmu_backend_unregister(void)
{
	kvm_pmu_unregister_backend(&vpmu_backend);
}

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

static int vpmu_live_events_get(void *data, u64 *val)
{
	*val = kvm_pmu_nr_perf_events();
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(vpmu_live_events_fops, vpmu_live_events_get, NULL, "%llu\n");

static int vpmu_kept_events_get(void *data, u64 *val)
{
	*val = kvm_vpmu_kept_events();
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(vpmu_kept_events_fops, vpmu_kept_events_get, NULL, "%llu\n");

static int vpmu_reset_set(void *data, u64 val)
{
	u32 i;

	for (i = 0; i < kvm_vpmu_nr_stats(); i++)
		kvm_vpmu_stat_clear(i);
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(vpmu_reset_fops, NULL, vpmu_reset_set, "%llu\n");

static int vpmu_fail_create_every_get(void *data, u64 *val)
{
	*val = kvm_vpmu_fail_create_every_get();
	return 0;
}

static int vpmu_fail_create_every_set(void *data, u64 val)
{
	kvm_vpmu_fail_create_every_set(val);
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(vpmu_fail_create_every_fops, vpmu_fail_create_every_get,
			 vpmu_fail_create_every_set, "%llu\n");

void vpmu_debugfs_init(void)
{
	u32 i;

	vpmu_debugfs_dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	for (i = 0; i < kvm_vpmu_nr_stats(); i++)
		debugfs_create_file_unsafe(kvm_vpmu_stat_name(i), 0644,
					   vpmu_debugfs_dir, (void *)(uintptr_t)i,
					   &vpmu_stat_fops);
	debugfs_create_file_unsafe("live_events", 0444, vpmu_debugfs_dir, NULL,
				   &vpmu_live_events_fops);
	debugfs_create_file_unsafe("kept_events", 0444, vpmu_debugfs_dir, NULL,
				   &vpmu_kept_events_fops);
	debugfs_create_file_unsafe("reset", 0200, vpmu_debugfs_dir, NULL,
				   &vpmu_reset_fops);
	debugfs_create_file_unsafe("fail_create_every", 0644, vpmu_debugfs_dir,
				   NULL, &vpmu_fail_create_every_fops);
}

void vpmu_debugfs_exit(void)
{
	debugfs_remove_recursive(vpmu_debugfs_dir);
}
