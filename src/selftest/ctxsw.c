// SPDX-License-Identifier: GPL-2.0
/*
 * The self-test's context-switch partner: a kthread on the caller's CPU that
 * answers each ping with a pong, so a round trip of the pinned caller is two
 * context switches.  Used by src/selftest/bench.rs through src/ffi/.
 */
#include <linux/completion.h>
#include <linux/cpumask.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/sched.h>

#include "vpmu_bindings.h"

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
