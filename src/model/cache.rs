// SPDX-License-Identifier: GPL-2.0

//! The `cache` policy, whole: what a vCPU keeps, from where a vPMC adopts,
//! how many events a vCPU may keep, when they grow too old, and what
//! happens at KVM's lazy cleanup and at vCPU destruction.
//!
//! [`reprogram`](fn@super::reprogram) calls [`keep`] and [`adopt`] when
//! [`plan`](super::policy::plan) says `Recreate`; KVM's lazy cleanup calls
//! [`cleanup`] and vCPU destruction [`destroy`].  The host carries out the
//! perf and KVM calls ([`PmcHost`], [`VcpuHost`]) and reports what they did.

use super::counter;
use super::host::{PmcHost, VcpuHost};
use super::kept_set::{Entry, KeptSet, Slots, KEPT_MAX};
use super::pmc::{EventAttr, EventInfo, KeptKey, PmcConfig, PmcState};
use super::policy::Policy;

/// How long a vCPU runs without using its PMU before what it keeps is
/// released, in ns of the vCPU thread's run time.  Far more than a
/// multiplexing guest's rotation (perf rotates every 4 ms by default): a
/// Linux guest whose perf throttles leaves every counter disabled until a
/// later tick, and under nested TCG that lasted more than 50 ms of run time.
/// Run time, not time slices: a vCPU thread that shares its CPU with many
/// others may get slices too short to reach its next PMU access.
pub const IDLE_RUN_TIME_NS: u64 = 1_000_000_000;

/// How many events a vCPU with `counters` counters may keep, given the
/// `cache_size` parameter (0 for the default): at least 1, at most
/// [`KEPT_MAX`].
///
/// The default is three times the counters plus one.  Since a vPMC takes a
/// config's paused event from the counter that holds it ([`is_donor`]), a
/// rotation of k configs over n counters keeps k - n events (the bound
/// sweep of `make bench`: 4 suffice for 6 configs over 4 counters).  The
/// default leaves room for what that cannot take (an event still running
/// while its counter's reprogram is pending: up to the counters again), for
/// KVM's lazy cleanup handing over every counter's paused event
/// ([`cleanup`]), and for the event being kept.
pub const fn keep_bound(counters: usize, cache_size: usize) -> usize {
    let bound = if cache_size == 0 {
        3 * counters + 1
    } else {
        cache_size
    };
    if bound > KEPT_MAX {
        KEPT_MAX
    } else if bound == 0 {
        1
    } else {
        bound
    }
}

/// Where an adopted event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptedFrom {
    /// The vCPU's kept set.
    Set,
    /// Another counter of the vCPU that held the event paused and would
    /// not have resumed it ([`is_donor`]).
    DisabledPmc,
}

/// What [`keep`] did with the vPMC's old event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// The event went into the set.
    pub kept: bool,
    /// Kept events released to make room (evicted, least recently kept
    /// first).
    pub evicted: u32,
    /// The event itself was released: the vCPU has no set, or the set no
    /// slot for it.
    pub dropped: bool,
}

/// Whether `cfg`'s counter, in `state`, may give its event to a vPMC that
/// wants `key`: its event, paused, was made for `key`, and the counter
/// would not resume it at its own next reprogram (the guest disabled it,
/// locally or in GLOBAL_CTRL, or gave it another config).
///
/// Linux's perf moves events between counters when it multiplexes: on AMD
/// it disables them all and then programs each counter in turn, on Intel it
/// clears GLOBAL_CTRL, reprograms the counters and sets GLOBAL_CTRL again,
/// after which KVM reprograms them all in index order.  Either way the
/// config a counter is given is often still attached, paused, to a counter
/// reprogrammed later.  Taking it from there spares a create, and a second
/// event for the same config kept beside the first until evicted.  A
/// counter whose reprogram is still pending after a write that stopped it
/// has not paused its event yet and keeps it.  The event filter is not
/// consulted: a counter it stops would not resume either, but is left
/// alone.
pub fn is_donor(key: KeptKey, cfg: &PmcConfig, state: &PmcState) -> bool {
    let Some(event) = state.event else {
        return false;
    };
    let resumes = cfg.globally_enabled
        && cfg.locally_enabled()
        && state.current_config == cfg.config()
        && event.precise == cfg.pebs_enabled;
    state.is_paused && !resumes && KeptKey::held(cfg.kind, state) == Some(key)
}

/// Whether KVM's lazy cleanup (`kvm_pmu_cleanup()`) is about to release the
/// event of `cfg`'s counter: one the guest neither used in the time slice
/// that ended (`in_use`) nor left enabled.  [`cleanup`] keeps such an event
/// when it is paused.
pub fn released_by_cleanup(cfg: &PmcConfig, state: &PmcState, in_use: bool) -> bool {
    !in_use && state.event.is_some() && !cfg.locally_enabled()
}

/// Puts `event`, made for `key`, in the vCPU's set, releasing the least
/// recently kept events beyond the bound first.  Without a set, or if the
/// set cannot take it, the event is released.
fn stash<H: VcpuHost>(host: &mut H, key: KeptKey, info: EventInfo, event: H::Event) -> Kept {
    let bound = keep_bound(host.nr_counters(), host.cache_size());
    let mut done = Kept::default();
    loop {
        let Some(set) = host.kept_set(false) else {
            host.release_detached(event);
            done.dropped = true;
            return done;
        };
        if set.len() < bound {
            break;
        }
        match set.take_oldest() {
            Some(old) => host.release_detached(old),
            None => break,
        }
        done.evicted += 1;
    }
    let refused = host
        .kept_set(false)
        .map_or(Err(None), |set| set.insert(key, info, event).map_err(Some));
    match refused {
        Ok(()) => done.kept = true,
        Err(Some(event)) => {
            host.release_detached(event);
            done.dropped = true;
        }
        // The set was there a moment ago and nothing took it away.
        Err(None) => {}
    }
    done
}

/// `reprogram()`, config changed: keeps the vPMC's paused event, if any,
/// in the vCPU's set under the key it was made for, instead of releasing it.
pub fn keep<H: PmcHost + VcpuHost>(cfg: &PmcConfig, st: &mut PmcState, host: &mut H) -> Kept {
    let (Some(key), Some(info)) = (KeptKey::held(cfg.kind, st), st.event) else {
        return Kept::default();
    };
    // Paused by this reprogram (or earlier), its count is in `st.counter`:
    // it leaves nothing behind and counts nothing while kept.  A host that
    // cannot detach it releases it, as under `Reuse`.
    let Some(event) = host.detach() else {
        host.release();
        st.event = None;
        st.current_config = 0;
        return Kept {
            dropped: true,
            ..Kept::default()
        };
    };
    st.event = None;
    st.current_config = 0;
    stash(host, key, info, event)
}

/// Takes, for `key`, an event from the vCPU's set or else from another
/// counter that would not resume it ([`is_donor`]).
fn find<H: VcpuHost>(host: &mut H, key: KeptKey) -> Option<(H::Event, EventInfo, AdoptedFrom)> {
    if let Some((event, info)) = host.kept_set(false).and_then(|set| set.take(key)) {
        return Some((event, info, AdoptedFrom::Set));
    }
    let mut idx = 0;
    while let Some((cfg, state, _)) = host.next_pmc(&mut idx, true) {
        if is_donor(key, &cfg, &state) {
            let info = state.event?;
            let event = host.detach_from(cfg.kind)?;
            return Some((event, info, AdoptedFrom::DisabledPmc));
        }
    }
    None
}

/// What [`adopt`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Nothing for the config: create.
    None,
    /// An event adopted and running.
    Running(AdoptedFrom),
    /// An event adopted but perf refused its new period: the vPMC holds it,
    /// paused, for the caller to replace.
    PeriodRefused,
}

/// `reprogram()`, after [`keep`]: gives the vPMC, which holds no event, an
/// event of `attr`'s config from the set or a disabled counter, with its
/// period recalculated from this vPMC's counter, and enables it.
pub fn adopt<H: PmcHost + VcpuHost>(
    cfg: &PmcConfig,
    st: &mut PmcState,
    host: &mut H,
    attr: &EventAttr,
) -> Adoption {
    let Some((event, info, from)) = find(host, cfg.kept_key()) else {
        return Adoption::None;
    };
    host.attach(event);
    st.event = Some(info);
    st.current_config = attr.current_config;
    st.intr = attr.intr;
    // Paused since it was detached: no overflow is in flight, and the period
    // set here makes its next overflow this counter's wrap, as a new event's.
    if info.sampling
        && host
            .set_period(counter::sample_period(st.counter, cfg.mask))
            .is_err()
    {
        return Adoption::PeriodRefused;
    }
    host.enable();
    st.is_paused = false;
    Adoption::Running(from)
}

/// What [`cleanup`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Kept events released because the vCPU's PMU was idle too long.
    pub released_idle: u32,
    /// Paused events of unused counters kept instead of released by KVM.
    pub kept: u32,
    /// Kept events released to make room for them.
    pub evicted: u32,
    /// Of those paused events, the ones released for want of a slot.
    pub dropped: u32,
}

/// KVM's lazy cleanup of a vCPU with a kept set, at its first entry after
/// it was scheduled in, before KVM releases the events of the counters the
/// guest neither used in the time slice that ended nor left enabled.
///
/// Once the vCPU has run for [`IDLE_RUN_TIME_NS`] (`run_time_ns` is its
/// thread's run time now) without using its PMU ([`pmu_in_use`]), what it keeps
/// is released, as KVM releases the events of unused counters.  Until then,
/// under `cache`, the paused events KVM is about to release are kept instead
/// ([`released_by_cleanup`]): a vCPU thread with short slices may see a slice
/// end between disabling a counter and programming its next config, and a
/// throttled Linux guest leaves every counter disabled for several slices.
pub fn cleanup<H: VcpuHost>(policy: Policy, host: &mut H, run_time_ns: u64) -> Cleanup {
    let mut done = Cleanup::default();
    if host.kept_set(false).is_none() {
        return done;
    }
    let in_use = pmu_in_use(host);
    let Some(set) = host.kept_set(false) else {
        return done;
    };
    if set.idle_time(in_use, run_time_ns) >= IDLE_RUN_TIME_NS {
        while let Some(event) = host.kept_set(false).and_then(|set| set.take_oldest()) {
            host.release_detached(event);
            done.released_idle += 1;
        }
        return done;
    }
    if policy != Policy::Cache {
        return done;
    }
    let mut idx = 0;
    while let Some((cfg, state, in_use)) = host.next_pmc(&mut idx, true) {
        let (Some(key), Some(info)) = (KeptKey::held(cfg.kind, &state), state.event) else {
            continue;
        };
        if !released_by_cleanup(&cfg, &state, in_use) || !state.is_paused {
            continue;
        }
        let Some(event) = host.detach_from(cfg.kind) else {
            continue;
        };
        let kept = stash(host, key, info, event);
        done.kept += u32::from(kept.kept);
        done.evicted += kept.evicted;
        done.dropped += u32::from(kept.dropped);
    }
    done
}

/// Whether the guest used its PMU in the time slice that ended: it accessed
/// a counter, or has one enabled (an enabled counter counts, untouched).
pub fn pmu_in_use<H: VcpuHost>(host: &mut H) -> bool {
    let mut idx = 0;
    while let Some((cfg, _, accessed)) = host.next_pmc(&mut idx, false) {
        if accessed || cfg.locally_enabled() {
            return true;
        }
    }
    false
}

/// vCPU destruction, before KVM releases the vPMCs' own events: every kept
/// event is released (`release`); the caller frees the set.  Returns how
/// many.
pub fn destroy<E, S: Slots<Option<Entry<E>>>>(
    set: &mut KeptSet<E, S>,
    mut release: impl FnMut(E),
) -> u32 {
    let mut released = 0;
    while let Some(event) = set.take_oldest() {
        release(event);
        released += 1;
    }
    released
}
