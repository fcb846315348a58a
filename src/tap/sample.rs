//! Which exchanges go into the recording (and which are shadowed): a deterministic share of
//! all traffic, decided by a hash of the exchange id, plus at least N exchanges per interface
//! per output file however rare the interface — the interface called once every six weeks is
//! exactly the one a rule list built from monitoring forgets.
//!
//! The decision is split in two so it is both exact and cheap. The recorder thread owns a
//! [`Quota`] per file and makes the final call; the proxy only asks [`Coverage::needs`]
//! whether an exchange that the hash did not pick could still be wanted, so it copies bodies
//! only for exchanges that may be kept.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// Interfaces tracked per file for the minimum. Past it, new interfaces are kept only by the
/// sample (counted), so a flood of untemplated paths cannot grow memory without bound.
pub const MAX_TRACKED_INTERFACES: usize = 100_000;

/// A 64-bit hash of `id` under `salt`: FNV-1a, then the SplitMix64 finalizer so that ids that
/// differ only in their last digit spread over the whole range. Stable across versions and
/// platforms (a recording's sample can be recomputed from its ids).
pub fn hash_id(id: &str, salt: u64) -> u64 {
    let mut h = crate::hash::fnv1a64_from(crate::hash::FNV_OFFSET ^ salt, id.as_bytes());
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A deterministic share of exchange ids.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    rate: f64,
    salt: u64,
}

impl Sampler {
    /// Picks `rate` (0 to 1) of ids; different salts pick independent subsets.
    pub fn new(rate: f64, salt: u64) -> Self {
        Sampler { rate, salt }
    }

    /// True when `id` is in the sample. The same id always gets the same answer.
    pub fn picks(&self, id: &str) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        if self.rate <= 0.0 {
            return false;
        }
        // Compare in the top 53 bits, where an f64 is exact.
        let x = (hash_id(id, self.salt) >> 11) as f64 / (1u64 << 53) as f64;
        x < self.rate
    }

    /// The share picked.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// Why an exchange was kept or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Picked by the sample.
    Sampled,
    /// Not picked, but its interface had fewer than the minimum in this file.
    Minimum,
    /// Not kept.
    Out,
}

/// The proxy's read-only view of the current file's quota: which interfaces already have
/// their minimum. Written only by the recorder thread.
#[derive(Debug, Default)]
pub struct Coverage {
    min: u32,
    full: RwLock<HashSet<String>>,
    saturated: AtomicBool,
}

impl Coverage {
    /// Coverage for a minimum of `min` per interface per file.
    pub fn new(min: u32) -> Self {
        Coverage {
            min,
            ..Default::default()
        }
    }

    /// True when an exchange of `interface` that the sample did not pick may still be kept,
    /// so its bodies must be copied.
    pub fn needs(&self, interface: &str) -> bool {
        if self.min == 0 || self.saturated.load(Ordering::Relaxed) {
            return false;
        }
        match self.full.read() {
            Ok(set) => !set.contains(interface),
            // A poisoned lock only means a recorder panic; copying is the safe answer.
            Err(_) => true,
        }
    }

    fn mark_full(&self, interface: &str) {
        if let Ok(mut set) = self.full.write() {
            set.insert(interface.to_string());
        }
    }

    fn reset(&self) {
        if let Ok(mut set) = self.full.write() {
            set.clear();
        }
        self.saturated.store(false, Ordering::Relaxed);
    }
}

/// The per-file minimum, owned by the recorder thread.
#[derive(Debug)]
pub struct Quota {
    min: u32,
    counts: HashMap<String, u32>,
    /// Exchanges not given the minimum because too many interfaces were tracked already.
    pub untracked: u64,
}

impl Quota {
    /// A quota of `min` exchanges per interface per file.
    pub fn new(min: u32) -> Self {
        Quota {
            min,
            counts: HashMap::new(),
            untracked: 0,
        }
    }

    /// Decides whether an exchange of `interface` is kept in the current file; `sampled` is
    /// the hash decision. Counts kept exchanges and tells `coverage` when an interface has
    /// its minimum.
    pub fn admit(&mut self, interface: &str, sampled: bool, coverage: &Coverage) -> Admit {
        if self.min == 0 {
            return if sampled { Admit::Sampled } else { Admit::Out };
        }
        let tracked = self.counts.contains_key(interface);
        if !tracked && self.counts.len() >= MAX_TRACKED_INTERFACES {
            coverage.saturated.store(true, Ordering::Relaxed);
            if !sampled {
                self.untracked += 1;
            }
            return if sampled { Admit::Sampled } else { Admit::Out };
        }
        if !tracked {
            self.counts.insert(interface.to_string(), 0);
        }
        let Some(count) = self.counts.get_mut(interface) else {
            return Admit::Out;
        };
        let verdict = if sampled {
            Admit::Sampled
        } else if *count < self.min {
            Admit::Minimum
        } else {
            Admit::Out
        };
        if verdict != Admit::Out {
            *count += 1;
            if *count == self.min {
                coverage.mark_full(interface);
            }
        }
        verdict
    }

    /// Starts counting for a new file.
    pub fn reset(&mut self, coverage: &Coverage) {
        self.counts.clear();
        coverage.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_and_close_to_the_rate() {
        let s = Sampler::new(0.01, 0);
        let picked: Vec<bool> = (0..100_000).map(|i| s.picks(&format!("t-{i}"))).collect();
        let again: Vec<bool> = (0..100_000).map(|i| s.picks(&format!("t-{i}"))).collect();
        assert_eq!(picked, again);
        let n = picked.iter().filter(|p| **p).count();
        assert!((800..1200).contains(&n), "{n}");
        assert!(Sampler::new(1.0, 0).picks("x"));
        assert!(!Sampler::new(0.0, 0).picks("x"));
        // Another salt picks an independent subset.
        let other = Sampler::new(0.5, 7);
        let both = (0..10_000)
            .filter(|i| {
                let id = format!("t-{i}");
                Sampler::new(0.5, 0).picks(&id) && other.picks(&id)
            })
            .count();
        assert!((2000..3000).contains(&both), "{both}");
    }

    #[test]
    fn hash_is_stable() {
        // Pinned so that a recording's sample means the same thing in every version.
        assert_eq!(hash_id("abc", 0), 0x0dd4_9049_0804_b508);
        assert_eq!(hash_id("", 0), 0xf52a_15e9_a9b5_e89b);
        assert_ne!(hash_id("abc", 0), hash_id("abc", 1));
    }

    /// The check: one call among 100,000 at 1% with a minimum of 1 is kept.
    #[test]
    fn a_rare_interface_is_kept_among_100k_at_one_percent() {
        let s = Sampler::new(0.01, 0);
        let cov = Coverage::new(1);
        let mut q = Quota::new(1);
        let mut kept_rare = false;
        let mut kept = 0;
        for i in 0..100_000 {
            let id = format!("e{i}");
            let iface = if i == 63_311 {
                "GET /api/reports/annual-export"
            } else {
                "GET /api/users/{id}"
            };
            let sampled = s.picks(&id);
            // The proxy copies only what may be kept; the recorder decides.
            if !(sampled || cov.needs(iface)) {
                continue;
            }
            match q.admit(iface, sampled, &cov) {
                Admit::Out => {}
                _ => {
                    kept += 1;
                    kept_rare |= iface.contains("annual");
                }
            }
        }
        assert!(kept_rare);
        assert!((800..1200).contains(&kept), "{kept}");
        assert!(!cov.needs("GET /api/users/{id}"));
        q.reset(&cov);
        assert!(cov.needs("GET /api/users/{id}"));
        assert_eq!(q.admit("GET /api/users/{id}", false, &cov), Admit::Minimum);
        assert_eq!(q.admit("GET /api/users/{id}", false, &cov), Admit::Out);
        assert_eq!(q.admit("GET /api/users/{id}", true, &cov), Admit::Sampled);
    }

    #[test]
    fn minimum_counts_sampled_exchanges_too() {
        let cov = Coverage::new(2);
        let mut q = Quota::new(2);
        assert_eq!(q.admit("a", true, &cov), Admit::Sampled);
        assert!(cov.needs("a"));
        assert_eq!(q.admit("a", false, &cov), Admit::Minimum);
        assert!(!cov.needs("a"));
        assert_eq!(q.admit("a", false, &cov), Admit::Out);
        let none = Coverage::new(0);
        assert!(!none.needs("a"));
        assert_eq!(Quota::new(0).admit("a", false, &none), Admit::Out);
    }
}
