/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C interface of kvm_vpmu that bindgen turns into Rust: the perf kernel
 * API, the KVM functions exported by the backend patch, and the shim
 * functions of shim.c.  struct kvm_pmc stays opaque to Rust: only the shim
 * reads and writes its fields, so Rust never depends on KVM's layout.
 *
 * shim.c includes this header together with arch/x86/kvm/pmu.h, so the
 * compiler checks the KVM prototypes below against KVM's own.
 */
#ifndef _KVM_VPMU_BINDINGS_H
#define _KVM_VPMU_BINDINGS_H

#include <linux/perf_event.h>
#include <linux/types.h>

struct kvm_pmc;
struct kvm_vcpu;

/* The `policy` parameter is an index into the Rust Policy::ALL: reuse. */
#define VPMU_POLICY_DEFAULT 1

/* From arch/x86/kvm/pmu.h (patches/0001). */
void kvm_perf_overflow(struct perf_event *perf_event,
		       struct perf_sample_data *data, struct pt_regs *regs);
void kvm_pmc_attach_perf_event(struct kvm_pmc *pmc, struct perf_event *event);
void pmc_release_perf_event(struct kvm_pmc *pmc);
struct perf_event *kvm_pmc_detach_perf_event(struct kvm_pmc *pmc);
void kvm_pmc_emulate_overflow(struct kvm_pmc *pmc);
u64 kvm_pmc_pebs_precise_level(struct kvm_pmc *pmc);
long kvm_pmu_nr_perf_events(void);

/* What a reprogram needs to know of one vPMC, copied out of KVM. */
struct vpmu_pmc_snapshot {
	u64 eventsel;
	u64 mask;
	u64 raw_event_mask;
	u64 counter;
	u64 emulated_counter;
	u64 current_config;
	u32 idx;
	u8 fixed_ctrl;
	bool is_fixed;
	bool globally_enabled;
	bool filter_allows;
	bool pebs_enabled;
	bool is_paused;
	bool intr;
	bool has_event;
	bool sampling;
	bool precise;
};

/* What a reprogram changed in the vPMC, written back into KVM. */
struct vpmu_pmc_update {
	u64 counter;
	u64 current_config;
	bool is_paused;
	bool intr;
};

void vpmu_pmc_snapshot(struct kvm_pmc *pmc, struct vpmu_pmc_snapshot *snap);
void vpmu_pmc_update(struct kvm_pmc *pmc, const struct vpmu_pmc_update *upd);
struct perf_event *vpmu_pmc_perf_event(struct kvm_pmc *pmc);
struct kvm_vcpu *vpmu_pmc_vcpu(struct kvm_pmc *pmc);
u32 vpmu_pmc_nr_counters(struct kvm_pmc *pmc);
bool vpmu_vcpu_pmu_in_use(struct kvm_vcpu *vcpu);
void vpmu_event_info(struct perf_event *event, bool *sampling, bool *precise);
void vpmu_event_retarget(struct perf_event *event, struct kvm_pmc *pmc);
void vpmu_kept_lock(void);
void vpmu_kept_unlock(void);

struct task_struct *vpmu_current(void);
bool vpmu_is_err(const void *ptr);
long vpmu_ptr_err(const void *ptr);
u64 vpmu_rdtsc(void);
bool vpmu_host_has_tsx(void);
bool vpmu_host_has_pmu(void);

int vpmu_param_policy(void);
bool vpmu_param_selftest(void);
bool vpmu_param_soft(void);
unsigned int vpmu_param_cache_size(void);

struct task_struct *vpmu_ctxsw_start(void);
void vpmu_ctxsw_round_trip(void);
void vpmu_ctxsw_stop(struct task_struct *partner);

int vpmu_backend_register(void);
void vpmu_backend_unregister(void);
void vpmu_debugfs_init(void);
void vpmu_debugfs_exit(void);

/* Implemented in Rust. */
int kvm_vpmu_reprogram(struct kvm_pmc *pmc);
void kvm_vpmu_host_capability(struct x86_pmu_capability *cap);
bool kvm_vpmu_soft_active(void);
void kvm_vpmu_vcpu_cleanup(struct kvm_vcpu *vcpu);
void kvm_vpmu_vcpu_destroy(struct kvm_vcpu *vcpu);
u64 kvm_vpmu_kept_events(void);
int kvm_vpmu_policy_parse(const char *val, size_t len);
const char *kvm_vpmu_policy_name(int policy);
u32 kvm_vpmu_nr_stats(void);
const char *kvm_vpmu_stat_name(u32 stat);
u64 kvm_vpmu_stat_read(u32 stat);
void kvm_vpmu_stat_clear(u32 stat);
u64 kvm_vpmu_fail_create_every_get(void);
void kvm_vpmu_fail_create_every_set(u64 every);

#endif /* _KVM_VPMU_BINDINGS_H */
