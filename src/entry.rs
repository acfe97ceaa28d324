// SPDX-License-Identifier: GPL-2.0

//! Every function that C calls: KVM's backend callbacks (through the
//! `struct kvm_pmu_backend` of `bindings/shim.c`) and the shim's question
//! whether soft mode is active.  Each turns raw pointers into the safe types of
//! [`crate::ffi`] and hands over to safe code.

use core::ffi::c_int;
use core::mem::MaybeUninit;

use kernel::error::code::EINVAL;

use crate::executor::{self, Pmc, Vcpu, VcpuDestroyed};
#[cfg(CONFIG_KVM_VPMU_SOFT)]
use crate::ffi::kvm::HostPmu;
use crate::ffi::{self, RawPmc, RawPolicy, RawVcpu};
use crate::model::Policy;
use crate::soft;

/// `kvm_pmu_backend.reprogram`, through the shim, which checks `enable` and
/// reads the `policy` parameter.
///
/// # Safety
///
/// `pmc` must be a vPMC of a vCPU whose `vcpu->mutex` the current task holds
/// for the duration of the call.
#[no_mangle]
unsafe extern "C" fn kvm_vpmu_reprogram(pmc: *mut RawPmc, policy: RawPolicy) -> c_int {
    let mut snap = MaybeUninit::uninit();
    // SAFETY: KVM calls the backend from kvm_pmu_handle_event() in vCPU
    // context with `vcpu->mutex` held, as the caller guarantees; this module
    // gives vCPUs no backend state but the executor's.
    let Some((pmc, cfg, state)) = (unsafe { Pmc::from_raw(pmc, &mut snap) }) else {
        return EINVAL.to_errno();
    };
    executor::reprogram(pmc, cfg, state, ffi::policy_of(policy), soft::backing())
}

/// `kvm_pmu_backend.host_capability`: perf found no PMU on this host.
///
/// # Safety
///
/// `cap` must be valid for reads and writes for the duration of the call.
#[cfg(CONFIG_KVM_VPMU_SOFT)]
#[no_mangle]
unsafe extern "C" fn kvm_vpmu_host_capability(cap: *mut ffi::x86_pmu_capability) {
    // SAFETY: valid, and ours during the call, as the caller guarantees.
    soft::describe_host_pmu(unsafe { HostPmu::from_raw(cap) });
}

/// Whether soft mode is on (the shim refuses `enable=0` then).
#[no_mangle]
extern "C" fn kvm_vpmu_soft_active() -> bool {
    soft::active()
}

/// `kvm_pmu_backend.vcpu_cleanup`, through the shim, which says whether
/// `enable` is on: KVM's lazy cleanup of unused events.
///
/// # Safety
///
/// `vcpu` must be a vCPU whose `vcpu->mutex` the current task holds for the
/// duration of the call.
#[no_mangle]
unsafe extern "C" fn kvm_vpmu_vcpu_cleanup(vcpu: *mut RawVcpu, enabled: bool) {
    // SAFETY: as the caller guarantees; this module gives vCPUs no backend
    // state but the executor's.
    if let Some(vcpu) = unsafe { Vcpu::from_raw(vcpu) } {
        // With `enable` off KVM's own code owns the counters: keep nothing new.
        let policy = if enabled {
            ffi::policy()
        } else {
            Policy::Reuse
        };
        executor::vcpu_cleanup(vcpu, policy);
    }
}

/// `kvm_pmu_backend.vcpu_destroy`: the vCPU, which has backend state, is
/// being destroyed; its kept events are released and its state freed.
///
/// # Safety
///
/// `vcpu` must be a vCPU that the current task is destroying.
#[no_mangle]
unsafe extern "C" fn kvm_vpmu_vcpu_destroy(vcpu: *mut RawVcpu) {
    // SAFETY: KVM's `vcpu_destroy`, called once per vCPU with backend
    // state, which this module gives only as the executor's.
    if let Some(vcpu) = unsafe { VcpuDestroyed::from_raw(vcpu) } {
        executor::vcpu_destroy(vcpu);
    }
}
