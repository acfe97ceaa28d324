// SPDX-License-Identifier: GPL-2.0

//! Architectural PMU definitions (Intel SDM vol. 3B ch. 20, AMD APM vol. 2
//! ch. 13) and the per-vCPU PMU shape as KVM 6.12 derives it in
//! `intel_pmu_refresh()` / `amd_pmu_refresh()`.

/// IA32_PERFEVTSELx / `MSR_K7_EVNTSELx` fields.
pub const EVENTSEL_EVENT: u64 = 0xff;
/// Unit mask.
pub const EVENTSEL_UMASK: u64 = 0xff << 8;
/// Count in user mode (CPL > 0).
pub const EVENTSEL_USR: u64 = 1 << 16;
/// Count in kernel mode (CPL 0).
pub const EVENTSEL_OS: u64 = 1 << 17;
/// Count edges, not cycles.
pub const EVENTSEL_EDGE: u64 = 1 << 18;
/// Pin control (KVM ignores it).
pub const EVENTSEL_PIN_CONTROL: u64 = 1 << 19;
/// Raise a PMI on overflow.
pub const EVENTSEL_INT: u64 = 1 << 20;
/// Count on any thread of the core (reserved for guests).
pub const EVENTSEL_ANY: u64 = 1 << 21;
/// Local enable of the counter.
pub const EVENTSEL_ENABLE: u64 = 1 << 22;
/// Invert the counter-mask comparison.
pub const EVENTSEL_INV: u64 = 1 << 23;
/// Counter mask.
pub const EVENTSEL_CMASK: u64 = 0xff << 24;
/// Haswell TSX qualifiers, valid only when the guest has HLE or RTM.
pub const HSW_IN_TX: u64 = 1 << 32;
/// Count only in checkpointed TSX regions.
pub const HSW_IN_TX_CHECKPOINTED: u64 = 1 << 33;
/// Ice Lake adaptive PEBS record bit of IA32_PERFEVTSELx.
pub const ICL_EVENTSEL_ADAPTIVE: u64 = 1 << 34;
/// AMD extends the event select with bits 35:32.
pub const AMD64_EVENTSEL_EVENT: u64 = EVENTSEL_EVENT | (0xf << 32);

/// The bits of an event select that reach `perf_event_attr.config`.
pub const X86_RAW_EVENT_MASK: u64 =
    EVENTSEL_EVENT | EVENTSEL_UMASK | EVENTSEL_EDGE | EVENTSEL_INV | EVENTSEL_CMASK;
/// The AMD event select bits that reach `perf_event_attr.config`.
pub const AMD64_RAW_EVENT_MASK: u64 = X86_RAW_EVENT_MASK | AMD64_EVENTSEL_EVENT;

/// IA32_FIXED_CTR_CTRL: one 4-bit field per fixed counter.
pub const FIXED_OS: u8 = 1 << 0;
/// Fixed counter field: count in user mode.
pub const FIXED_USR: u8 = 1 << 1;
/// Fixed counter field: raise a PMI on overflow.
pub const FIXED_PMI: u8 = 1 << 3;
/// Width of one fixed counter field.
pub const FIXED_BITS_STRIDE: u32 = 4;
/// Mask of one fixed counter field.
pub const FIXED_BITS_MASK: u64 = 0xf;
/// Adaptive PEBS bit of fixed counter 0; counter i uses bit 32 + 4 * i.
pub const ICL_FIXED_0_ADAPTIVE: u64 = 1 << 32;

/// KVM's pmc index of fixed counter 0 (GP counters are 0..31).
pub const FIXED_PMC_BASE_IDX: u32 = 32;
/// Intel has at most 3 fixed counters that KVM virtualizes.
pub const MAX_FIXED: u8 = 3;
/// KVM caps GP counters at 8 (Intel) and 6 (AMD).
pub const MAX_GP_INTEL: u8 = 8;

/// IA32_PERF_GLOBAL_STATUS bits besides the per-counter overflow bits.
pub const GLOBAL_STATUS_BUFFER_OVF: u64 = 1 << 62;
/// GLOBAL_STATUS: condition changed.
pub const GLOBAL_STATUS_COND_CHGD: u64 = 1 << 63;

/// Intel MSRs.
pub const MSR_IA32_PMC0: u32 = 0x4c1;
/// IA32_PERFCTR0 (legacy 32-bit writes).
pub const MSR_IA32_PERFCTR0: u32 = 0xc1;
/// IA32_PERFEVTSEL0.
pub const MSR_P6_EVNTSEL0: u32 = 0x186;
/// IA32_FIXED_CTR0.
pub const MSR_CORE_PERF_FIXED_CTR0: u32 = 0x309;
/// IA32_FIXED_CTR_CTRL.
pub const MSR_CORE_PERF_FIXED_CTR_CTRL: u32 = 0x38d;
/// IA32_PERF_GLOBAL_STATUS.
pub const MSR_CORE_PERF_GLOBAL_STATUS: u32 = 0x38e;
/// IA32_PERF_GLOBAL_CTRL.
pub const MSR_CORE_PERF_GLOBAL_CTRL: u32 = 0x38f;
/// IA32_PERF_GLOBAL_OVF_CTRL.
pub const MSR_CORE_PERF_GLOBAL_OVF_CTRL: u32 = 0x390;
/// IA32_PEBS_ENABLE.
pub const MSR_IA32_PEBS_ENABLE: u32 = 0x3f1;
/// AMD MSRs: legacy K7 pairs and the interleaved Family 15h set.
pub const MSR_K7_EVNTSEL0: u32 = 0xc001_0000;
/// MSR_K7_PERFCTR0.
pub const MSR_K7_PERFCTR0: u32 = 0xc001_0004;
/// First Family 15h PERF_CTL; PERF_CTRn follows each CTLn.
pub const MSR_F15H_PERF_CTL0: u32 = 0xc001_0200;
/// PerfMonV2 global status.
pub const MSR_AMD64_PERF_CNTR_GLOBAL_STATUS: u32 = 0xc000_0300;
/// PerfMonV2 global control.
pub const MSR_AMD64_PERF_CNTR_GLOBAL_CTL: u32 = 0xc000_0301;
/// PerfMonV2 global status clear.
pub const MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR: u32 = 0xc000_0302;
/// PerfMonV2 global status set.
pub const MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET: u32 = 0xc000_0303;

/// Which vendor's MSR interface the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// Intel architectural PMU MSRs.
    Intel,
    /// AMD K7/F15H and PerfMonV2 MSRs.
    Amd,
}

/// A vPMC as KVM indexes it: GP counter `n` is index `n`, fixed counter `n`
/// is index `32 + n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmcKind {
    /// General-purpose counter n.
    Gp(u8),
    /// Fixed counter n.
    Fixed(u8),
}

impl PmcKind {
    /// The counter with KVM's `pmc->idx` `idx`: the inverse of [`idx`].
    ///
    /// [`idx`]: PmcKind::idx
    pub const fn from_idx(idx: u32) -> Self {
        if idx < FIXED_PMC_BASE_IDX {
            PmcKind::Gp(idx as u8)
        } else {
            PmcKind::Fixed((idx - FIXED_PMC_BASE_IDX) as u8)
        }
    }

    /// KVM's `pmc->idx`.
    pub const fn idx(self) -> u32 {
        match self {
            PmcKind::Gp(n) => n as u32,
            PmcKind::Fixed(n) => FIXED_PMC_BASE_IDX + n as u32,
        }
    }

    /// The bit of this counter in GLOBAL_CTRL, GLOBAL_STATUS and KVM's bitmaps.
    pub const fn bit(self) -> u64 {
        1 << self.idx()
    }
}

/// The 4-bit IA32_FIXED_CTR_CTRL field of fixed counter `n`.
pub const fn fixed_ctrl_field(fixed_ctr_ctrl: u64, n: u8) -> u8 {
    ((fixed_ctr_ctrl >> (n as u32 * FIXED_BITS_STRIDE)) & FIXED_BITS_MASK) as u8
}

/// The PEBS capability the guest is given through PERF_CAPABILITIES.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pebs {
    /// No PEBS.
    None,
    /// PEBS on GP counters only.
    Legacy,
    /// PEBS baseline (Ice Lake and later): GP and fixed counters, adaptive records.
    Baseline,
}

/// The guest PMU as CPUID and PERF_CAPABILITIES describe it, already clamped
/// to what the host supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmuShape {
    /// The MSR interface.
    pub vendor: Vendor,
    /// Intel architectural PMU version (`CPUID.0AH:EAX[7:0]`); AMD: 1, or 2 with PerfMonV2.
    pub version: u8,
    /// General-purpose counters.
    pub nr_gp: u8,
    /// Fixed counters (Intel only).
    pub nr_fixed: u8,
    /// GP counter width in bits.
    pub gp_width: u8,
    /// Fixed counter width in bits.
    pub fixed_width: u8,
    /// The guest sees HLE or RTM, which makes the HSW_IN_TX bits valid.
    pub tsx: bool,
    /// PEBS as PERF_CAPABILITIES exposes it.
    pub pebs: Pebs,
}

impl PmuShape {
    /// An Intel guest PMU; fixed counters exist from version 2 on.
    pub const fn intel(
        version: u8,
        nr_gp: u8,
        nr_fixed: u8,
        gp_width: u8,
        fixed_width: u8,
    ) -> Self {
        let nr_fixed = if version >= 2 { nr_fixed } else { 0 };
        PmuShape {
            vendor: Vendor::Intel,
            version,
            nr_gp,
            nr_fixed,
            gp_width,
            fixed_width,
            tsx: false,
            pebs: Pebs::None,
        }
    }

    /// An AMD guest PMU: 48-bit counters, no fixed counters; `v2` is PerfMonV2.
    pub const fn amd(nr_gp: u8, v2: bool) -> Self {
        PmuShape {
            vendor: Vendor::Amd,
            version: if v2 { 2 } else { 1 },
            nr_gp,
            nr_fixed: 0,
            gp_width: 48,
            fixed_width: 0,
            tsx: false,
            pebs: Pebs::None,
        }
    }

    const fn width_mask(width: u8) -> u64 {
        if width >= 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        }
    }

    /// `pmu->counter_bitmask[]` of a counter of this kind.
    pub const fn counter_mask(&self, kind: PmcKind) -> u64 {
        match kind {
            PmcKind::Gp(_) => Self::width_mask(self.gp_width),
            PmcKind::Fixed(_) => Self::width_mask(self.fixed_width),
        }
    }

    /// `kvm_pmu_has_perf_global_ctrl()`: GLOBAL_CTRL exists from version 2 on.
    pub const fn has_global_ctrl(&self) -> bool {
        self.version > 1
    }

    /// The GLOBAL_CTRL bits of all counters the guest has.
    pub const fn counters_mask(&self) -> u64 {
        let gp = (1u64 << self.nr_gp) - 1;
        let fixed = ((1u64 << self.nr_fixed) - 1) << FIXED_PMC_BASE_IDX;
        gp | fixed
    }

    /// `pmu->global_ctrl_rsvd`.
    pub const fn global_ctrl_rsvd(&self) -> u64 {
        if !self.has_global_ctrl() {
            return !0;
        }
        !self.counters_mask()
    }

    /// `pmu->global_status_rsvd` (shared by GLOBAL_OVF_CTRL).
    pub const fn global_status_rsvd(&self) -> u64 {
        let rsvd = self.global_ctrl_rsvd();
        match self.vendor {
            Vendor::Intel if self.has_global_ctrl() => {
                rsvd & !(GLOBAL_STATUS_BUFFER_OVF | GLOBAL_STATUS_COND_CHGD)
            }
            _ => rsvd,
        }
    }

    /// `pmu->reserved_bits` of GP event selects (before the per-counter
    /// HSW_IN_TX_CHECKPOINTED exception of counter 2).
    pub const fn eventsel_rsvd(&self) -> u64 {
        match self.vendor {
            Vendor::Amd => 0xffff_fff0_0028_0000,
            Vendor::Intel => {
                let mut rsvd = 0xffff_ffff_0020_0000u64;
                if self.tsx {
                    rsvd ^= HSW_IN_TX;
                }
                if matches!(self.pebs, Pebs::Baseline) {
                    rsvd &= !ICL_EVENTSEL_ADAPTIVE;
                }
                rsvd
            }
        }
    }

    /// `pmu->raw_event_mask`: the event select bits passed to perf.
    pub const fn raw_event_mask(&self) -> u64 {
        match self.vendor {
            Vendor::Amd => AMD64_RAW_EVENT_MASK,
            Vendor::Intel if self.tsx => X86_RAW_EVENT_MASK | HSW_IN_TX | HSW_IN_TX_CHECKPOINTED,
            Vendor::Intel => X86_RAW_EVENT_MASK,
        }
    }

    /// `pmu->fixed_ctr_ctrl_rsvd`: OS, USR and PMI of each fixed counter are
    /// writable, ANY never is, adaptive PEBS only with PEBS baseline.
    pub const fn fixed_ctr_ctrl_rsvd(&self) -> u64 {
        let mut rsvd = !0u64;
        let mut i = 0;
        while i < self.nr_fixed {
            let shift = i as u32 * FIXED_BITS_STRIDE;
            rsvd &= !(((FIXED_OS | FIXED_USR | FIXED_PMI) as u64) << shift);
            if matches!(self.pebs, Pebs::Baseline) {
                rsvd &= !(ICL_FIXED_0_ADAPTIVE << shift);
            }
            i += 1;
        }
        rsvd
    }

    /// `pmu->pebs_enable_rsvd`.
    pub const fn pebs_enable_rsvd(&self) -> u64 {
        match self.pebs {
            Pebs::None => !0,
            Pebs::Legacy => !((1u64 << self.nr_gp) - 1),
            Pebs::Baseline => !self.counters_mask(),
        }
    }

    /// GLOBAL_CTRL after RESET and refresh: all GP counters enabled.
    pub const fn global_ctrl_at_reset(&self) -> u64 {
        if self.has_global_ctrl() {
            (1u64 << self.nr_gp) - 1
        } else {
            0
        }
    }

    /// The architectural event encoding KVM gives fixed counter `n`
    /// (`intel_get_fixed_pmc_eventsel()`): instructions, cycles, ref-cycles.
    pub const fn fixed_eventsel(n: u8) -> u64 {
        match n {
            0 => 0x00c0,
            1 => 0x003c,
            _ => 0x0300,
        }
    }
}
