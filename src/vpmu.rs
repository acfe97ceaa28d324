// SPDX-License-Identifier: GPL-2.0

//! kvm_vpmu: a KVM vPMC reprogramming backend.
//!
//! KVM (with `patches/`) calls the backend instead of its own
//! `reprogram_counter()` after the guest reprograms a vPMC.  The model
//! decides what to do with the counter's host perf_event under the policy in
//! force; the executor does it.  Parameters (`bindings/shim.c`): `enable`,
//! `policy` and `cache_size` (writable at run time), `soft` and `selftest`
//! (load time).

use kernel::prelude::*;

pub mod model;

mod entry;
mod executor;
mod ffi;
mod kept;
mod selftest;
mod soft;
mod stats;

module! {
    type: KvmVpmu,
    name: "kvm_vpmu",
    // No `author`: 6.12's module! takes `author`, 7.3's only `authors`;
    // bindings/shim.c says MODULE_AUTHOR() for both.
    description: "KVM vPMC reprogramming backend",
    license: "GPL",
}

struct KvmVpmu {
    _registration: ffi::Registration,
}

impl kernel::Module for KvmVpmu {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        soft::init();
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
