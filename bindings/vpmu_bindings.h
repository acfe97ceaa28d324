/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C interface of kvm_vpmu that bindgen turns into Rust (src/ffi/): the
 * perf kernel API, the KVM functions exported by patches/, and the shim's
 * functions.  struct kvm_pmc and struct kvm_vcpu stay opaque to Rust: only
 * the shim reads and writes their fields, so Rust never depends on KVM's
 * layout.
 *
 * shim.c includes this header together with arch/x86/kvm/pmu.h, so the
 * compiler checks the KVM prototypes below against KVM's own.
 */
#ifndef _KVM_VPMU_BINDINGS_H
#define _KVM_VPMU_BINDINGS_H

#include <linux/kstrtox.h>
#include <linux/perf_event.h>
#include <linux/types.h>

struct kvm_pmc;
struct kvm_vcpu;

/* The `policy` parameter; shim.c spells the names. */
enum vpmu_policy {
	VPMU_POLICY_LEGACY,
	VPMU_POLICY_REUSE,
	VPMU_POLICY_CACHE,
	NR_VPMU_POLICIES,
};

/*
 * The most events a vCPU keeps, whatever `cache_size` says: kept events
 * count in KVM's u8 pmu->event_count beside the vPMCs' own (at most 8 GP,
 * 3 fixed and the LBR event).
 */
#define VPMU_KEPT_MAX 64

/* From arch/x86/kvm/pmu.h (patches/). */
void kvm_perf_overflow(struct perf_event *perf_event,
		       struct perf_sample_data *data, struct pt_regs *regs);
void kvm_pmc_emulate_overflow(struct kvm_pmc *pmc);
u64 kvm_pmc_pebs_precise_level(struct kvm_pmc *pmc);
void kvm_pmc_attach_perf_event(struct kvm_pmc *pmc, struct perf_event *event);
void kvm_pmc_release_perf_event(struct kvm_pmc *pmc);
bool kvm_pmc_event_filter_allows(struct kvm_pmc *pmc);
int kvm_pmu_set_backend_priv(struct kvm_vcpu *vcpu, void *priv);
struct perf_event *kvm_pmc_detach_perf_event(struct kvm_pmc *pmc);
void kvm_pmc_adopt_perf_event(struct kvm_pmc *pmc, struct perf_event *event);
void kvm_pmu_release_detached_event(struct kvm_vcpu *vcpu,
				    struct perf_event *event);

/*
 * The vCPU's PMU statistics in struct kvm_vcpu_stat (patches/), from
 * pmu_reprograms on, in its order; shim.c checks the layout.  KVM counts
 * reprograms, creates, adoptions and releases itself, through the helpers
 * above; the backend counts the rest.
 */
struct vpmu_vcpu_stat {
	u64 reprograms;
	u64 event_creates;
	u64 event_create_failures;
	u64 event_resumes;
	u64 event_releases;
	u64 events_kept;
	u64 events_adopted;
	u64 events_evicted;
};

/* What backs a vPMC after a reprogram (trace.h's KVM_PMU_REPROGRAM_*). */
enum vpmu_decision {
	VPMU_DECISION_IDLE,
	VPMU_DECISION_RESUME,
	VPMU_DECISION_ADOPT,
	VPMU_DECISION_ADOPT_PAUSED,
	VPMU_DECISION_CREATE,
	VPMU_DECISION_CREATE_FAILED,
};

/* Why a paused event was not resumed (trace.h's KVM_PMU_RESUME_*). */
enum vpmu_refusal {
	VPMU_REFUSAL_NONE,
	VPMU_REFUSAL_NO_EVENT,
	VPMU_REFUSAL_CONFIG_CHANGED,
	VPMU_REFUSAL_PEBS_CHANGED,
	VPMU_REFUSAL_PERIOD_REFUSED,
	VPMU_REFUSAL_POLICY,
};

/*
 * The model's PmcConfig and PmcState (src/model/pmc.rs), #[repr(C)] so that
 * vpmu_pmc_snapshot() writes them where the model reads them.  The fields
 * marked Rust hold Rust enums, which Rust writes from the raw fields of the
 * snapshot; src/ffi/kvm.rs checks at build time that the layouts agree.
 */
struct vpmu_pmc_config {
	u64 eventsel;
	u64 mask;
	u64 raw_event_mask;
	u8 kind[2];		/* Rust: PmcKind */
	u8 fixed_ctrl;
	bool globally_enabled;
	bool filter_allows;	/* Rust: looked up only where it decides */
	bool pebs_enabled;
	/* The host has HLE or RTM: IN_TX_CHECKPOINTED events cannot sample. */
	bool host_tsx;
};

struct vpmu_pmc_state {
	u64 counter;
	u64 emulated_counter;
	u64 current_config;
	bool is_paused;
	bool intr;
	u8 event[2];		/* Rust: Option<EventInfo> */
};

/*
 * What a reprogram needs to know of one vPMC, copied out of KVM: what the
 * decision reads, and where the vCPU's state and statistics are.
 * vpmu_pmc_snapshot() writes every field but the Rust ones.
 */
struct vpmu_pmc_snapshot {
	struct vpmu_pmc_config cfg;
	struct vpmu_pmc_state state;
	struct kvm_vcpu *vcpu;
	struct perf_event *event;
	/* The vCPU's backend state (pmu->backend_priv). */
	void *backend_priv;
	/* The vCPU's PMU statistics, written only in its context. */
	struct vpmu_vcpu_stat *stat;
	u32 idx;
	bool sampling;
	bool precise;
};

/*
 * The fields of a host event's perf_event_attr that kvm_vpmu sets, as
 * pmc_reprogram_counter() sets them; vpmu_perf_event_create() zeroes the
 * others.
 */
struct vpmu_perf_attr {
	u64 config;
	u64 sample_period;
	u32 type;
	u8 precise_ip;
	bool exclude_user;
	bool exclude_kernel;
	bool exclude_idle;
	bool exclude_host;
};

int vpmu_perf_event_create(const struct vpmu_perf_attr *attr,
			   perf_overflow_handler_t handler, void *context,
			   struct perf_event **event);
void vpmu_pmc_snapshot(struct kvm_pmc *pmc, struct vpmu_pmc_snapshot *snap);
void vpmu_pmc_update(struct kvm_pmc *pmc, const struct vpmu_pmc_state *state,
		     u8 decision, u8 refusal, bool kept);
bool vpmu_pmc_in_use(struct kvm_pmc *pmc);
u32 vpmu_vcpu_nr_counters(struct kvm_vcpu *vcpu);
void *vpmu_vcpu_backend_priv(struct kvm_vcpu *vcpu);
struct vpmu_vcpu_stat *vpmu_vcpu_stat(struct kvm_vcpu *vcpu);
struct kvm_pmc *vpmu_vcpu_next_pmc(struct kvm_vcpu *vcpu, u32 *idx,
				   bool paused_only);
struct kvm_pmc *vpmu_vcpu_pmc(struct kvm_vcpu *vcpu, u32 idx);
void *vpmu_event_context(struct perf_event *event);

u64 vpmu_current_run_time_ns(void);
u64 vpmu_rdtsc(void);
bool vpmu_host_has_pmu(void);
bool vpmu_host_is_intel(void);
bool vpmu_kvm_mediated_pmu(void);
bool vpmu_should_fail_create(void);

enum vpmu_policy vpmu_param_policy(void);
const char *vpmu_param_policy_name(void);
unsigned int vpmu_param_cache_size(void);
bool vpmu_param_soft(void);

int vpmu_backend_register(void);
void vpmu_backend_unregister(void);
void vpmu_debugfs_init(void);
void vpmu_debugfs_exit(void);
void vpmu_kept_account(s64 delta, u32 held);
void vpmu_kept_sets_account(int delta);

/* The self-test's context-switch partner (src/selftest/ctxsw.c). */
struct task_struct *vpmu_ctxsw_start(void);
void vpmu_ctxsw_round_trip(void);
void vpmu_ctxsw_stop(struct task_struct *partner);

/* Implemented in Rust (src/entry.rs). */
int kvm_vpmu_reprogram(struct kvm_pmc *pmc, enum vpmu_policy policy);
void kvm_vpmu_host_capability(struct x86_pmu_capability *cap);
bool kvm_vpmu_soft_active(void);
void kvm_vpmu_vcpu_cleanup(struct kvm_vcpu *vcpu, bool enabled);
void kvm_vpmu_vcpu_destroy(struct kvm_vcpu *vcpu);

#endif /* _KVM_VPMU_BINDINGS_H */
