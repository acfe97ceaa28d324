// SPDX-License-Identifier: GPL-2.0

//! Host build of the vPMC model: the same files the module compiles, as a
//! `no_std` library for cargo tests and benchmarks.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

#[path = "mod.rs"]
mod model;

pub use model::*;

/// KVM's vPMU around the model (MSR emulation, reprogram requests, overflow
/// handling, lazy cleanup, destruction), for tests and benchmarks only: in
/// the kernel KVM itself is the vPMU.
pub mod emulator;

pub use emulator::{MsrFault, Vpmu};
