// SPDX-License-Identifier: GPL-2.0

//! The vPMC model: what KVM x86 (Linux 6.12) owes a guest between a write to a
//! PMU MSR and the host perf_event that backs the counter, and the reprogram
//! policies that decide how that perf_event is kept or replaced.
//!
//! Nothing here touches the kernel: the module compiles these files into
//! `kvm_vpmu` and cargo compiles the very same files on the host for tests and
//! benchmarks.  The host perf_event and KVM are reached only through the
//! traits of [`host`], which the module implements over KVM and real perf
//! and the host tests over a simulation.
//!
//! Each file imports only files listed before it:
//! [`arch`] and [`counter`] (KVM's encodings and counter arithmetic),
//! [`pmc`] (one vPMC's config and state), [`policy`] (the reprogram
//! decision), [`kept_set`] (the `cache` policy's set), [`host`] (what the
//! model asks of its host), [`cache`] (every decision of the `cache` policy)
//! and [`reprogram`] (one reprogram, carried out).

pub mod arch;
pub mod cache;
pub mod counter;
pub mod host;
pub mod kept_set;
pub mod pmc;
pub mod policy;
pub mod reprogram;

pub use arch::{PmcKind, PmuShape, Vendor};
pub use cache::{AdoptedFrom, Cleanup};
pub use host::{DetachedEvents, Errno, PmcHost, VcpuHost};
pub use kept_set::{Entry, KeptSet, Slots, KEPT_MAX};
pub use pmc::{EventAttr, EventInfo, KeptKey, PmcConfig, PmcState};
pub use policy::{plan, Action, Policy, RejectReason};
pub use reprogram::{reprogram, Outcome, Report};
