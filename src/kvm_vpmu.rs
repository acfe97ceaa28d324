// SPDX-License-Identifier: GPL-2.0

//! kvm_vpmu: a KVM vPMC reprogramming backend.
//!
//! KVM (with `patches/`) calls the backend instead of its own
//! `reprogram_counter()` after the guest reprograms a vPMC.  The model
//! decides what to do with the counter's host perf_event under the policy in
//! force; the executor does it.  Parameters: `enable`, `policy` and
//! `cache_size` (writable at run time, `bindings/shim.c`), `selftest` (load
//! time, below) and, with `CONFIG_KVM_VPMU_SOFT`, `soft` (load time, in the
//! shim).

use kernel::prelude::*;

pub mod model;

mod entry;
mod executor;
mod ffi;
mod kept;
mod selftest;
#[cfg(CONFIG_KVM_VPMU_SOFT)]
mod soft;
mod stats;

/// Without `CONFIG_KVM_VPMU_SOFT` there is no soft mode: guest counters are
/// always backed by hardware events.
#[cfg(not(CONFIG_KVM_VPMU_SOFT))]
mod soft {
    use crate::ffi::perf::Backing;

    pub(crate) fn init() {}

    pub(crate) fn backing() -> Backing {
        Backing::Hardware
    }

    pub(crate) fn active() -> bool {
        false
    }
}

// The run-time parameters are the C shim's (bindings/shim.c says why), and so
// is `soft`, which exists only with CONFIG_KVM_VPMU_SOFT.
module! {
    type: KvmVpmu,
    name: "kvm_vpmu",
    authors: ["kvm-vpmu developers"],
    description: "KVM vPMC reprogramming backend",
    license: "GPL",
    params: {
        selftest: bool {
            default: false,
            description: "Run the KTAP self-test at load; fail the load if it fails",
        },
    },
}

struct KvmVpmu {
    // Dropped first: KVM stops calling in before debugfs goes.
    _registration: ffi::Registration,
    _debugfs: ffi::DebugfsDir,
}

impl kernel::Module for KvmVpmu {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        soft::init();
        let debugfs = ffi::DebugfsDir::new();
        let registration = ffi::Registration::new().inspect_err(|e| {
            pr_err!(
                "cannot register: another vPMU backend is registered ({:?})\n",
                e
            )
        })?;
        if ffi::selftest_requested() {
            // On failure `registration` is dropped, which unregisters.
            selftest::run(&registration)?;
        }
        pr_info!("registered, policy {}\n", ffi::policy_name());
        Ok(KvmVpmu {
            _registration: registration,
            _debugfs: debugfs,
        })
    }
}

impl Drop for KvmVpmu {
    fn drop(&mut self) {
        // Dropping the registration unregisters the backend.  No vCPU holds
        // kept events here: each such vCPU pins this module.
        pr_info!("unregistering\n");
    }
}
