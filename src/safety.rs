//! Which requests may be sent more than once. A replay sends each request to the baseline
//! and the candidate, and a request that is safe to repeat a third time, as the noise probe.
//! Safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) are safe by HTTP's definition; an RPC
//! gateway sends its reads as `POST`, so its users declare them (`--safe`, the config's
//! `[side_effects] safe`), and gRPC methods whose descriptor says
//! `option idempotency_level = NO_SIDE_EFFECTS` (or `IDEMPOTENT`) are safe without being
//! named. `[side_effects] unsafe` wins over everything, a safe method included.

use crate::exchange::Request;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a request may be repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Safe {
    /// A safe HTTP method.
    Method,
    /// A `--safe` or `[side_effects] safe` glob matches it.
    Declared,
    /// Its gRPC method is declared free of side effects or idempotent in the descriptor.
    Idempotent,
}

/// The run's rules for what may be repeated.
#[derive(Clone, Debug, Default)]
pub struct Safety {
    safe: Vec<String>,
    unsafe_: Vec<String>,
    idempotent: HashSet<String>,
    /// Per glob of `safe`, then of `unsafe_`: whether it ever decided a request, so a run
    /// can say which declarations did nothing.
    used: Vec<Arc<AtomicBool>>,
}

impl Safety {
    /// Rules from declared globs (matched against the interface key and against
    /// `METHOD /path`) and the gRPC paths (`/pkg.Service/Method`) a descriptor marks as
    /// repeatable.
    pub fn new(safe: Vec<String>, unsafe_: Vec<String>, idempotent: HashSet<String>) -> Self {
        let used = (0..safe.len() + unsafe_.len())
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        Safety {
            safe,
            unsafe_,
            idempotent,
            used,
        }
    }

    /// Indices of the `safe` globs that matched no request that may change state.
    pub fn unused_safe(&self) -> Vec<usize> {
        (0..self.safe.len())
            .filter(|i| !self.used[*i].load(Ordering::Relaxed))
            .collect()
    }

    /// Indices of the `unsafe` globs that matched no request.
    pub fn unused_unsafe(&self) -> Vec<usize> {
        (0..self.unsafe_.len())
            .filter(|i| !self.used[self.safe.len() + i].load(Ordering::Relaxed))
            .collect()
    }

    /// Why `req` (keyed as `interface`) may be sent more than once, or `None` when it may
    /// change state.
    pub fn safe(&self, req: &Request, interface: &str) -> Option<Safe> {
        // The request's own `METHOD /path`, for keys that templating made differ from it;
        // built only when some glob is declared.
        let plain = (!self.safe.is_empty() || !self.unsafe_.is_empty())
            .then(|| format!("{} {}", req.method.to_ascii_uppercase(), req.path()));
        let (used_safe, used_unsafe) = self.used.split_at(self.safe.len().min(self.used.len()));
        // Past the first match only globs never used yet are tried, so each one's use is
        // known without matching every glob against every request.
        let matches = |globs: &[String], used: &[Arc<AtomicBool>]| {
            plain.as_ref().is_some_and(|plain| {
                let mut hit = false;
                for (g, u) in globs.iter().zip(used) {
                    if hit && u.load(Ordering::Relaxed) {
                        continue;
                    }
                    if crate::glob::matches(g, interface) || crate::glob::matches(g, plain) {
                        u.store(true, Ordering::Relaxed);
                        hit = true;
                    }
                }
                hit
            })
        };
        if matches(&self.unsafe_, used_unsafe) {
            return None;
        }
        if !req.is_side_effecting() {
            return Some(Safe::Method);
        }
        if matches(&self.safe, used_safe) {
            return Some(Safe::Declared);
        }
        if self.idempotent.contains(&*req.path()) {
            return Some(Safe::Idempotent);
        }
        None
    }

    /// True when some requests with a method that may change state are declared safe.
    pub fn declares_reads(&self) -> bool {
        !self.safe.is_empty() || !self.idempotent.is_empty()
    }

    /// True when `req` may be sent more than once.
    pub fn is_safe(&self, req: &Request, interface: &str) -> bool {
        self.safe(req, interface).is_some()
    }
}

/// Verbs that open the method names of reads in RPC APIs (`GetItem`, `list_orders`,
/// `BatchGetUsers`).
const READ_VERBS: &[&str] = &[
    "get", "list", "search", "query", "find", "fetch", "read", "lookup", "describe", "count",
    "check", "batchget", "exists", "resolve", "preview", "estimate", "validate", "watch",
];

/// True when the last segment of an interface key names a read: `POST /rpc/catalog/GetItem`,
/// `POST /pkg.Orders/ListOrders`, `POST /api/search_products`. Only for hints: a name is no
/// proof, so nothing is treated as safe for it.
pub fn reads_like_read(interface: &str) -> bool {
    let path = interface.rsplit(' ').next().unwrap_or(interface);
    let last = path
        .trim_end_matches('/')
        .rsplit(['/', '.'])
        .next()
        .unwrap_or("");
    let lower = last.to_ascii_lowercase();
    READ_VERBS.iter().any(|verb| {
        let Some(rest) = lower.strip_prefix(verb) else {
            return false;
        };
        if rest.is_empty() {
            return true;
        }
        // The verb must end a word: `GetItem`, `get_item`, `get-item`, never `Getaway`.
        let next = last.as_bytes()[verb.len()];
        next.is_ascii_uppercase() || next == b'_' || next == b'-' || next.is_ascii_digit()
    })
}

/// The config line that declares `interface` safe, for reports: the interface itself, or
/// for many methods of one kind a glob over the verb.
pub fn declare_line(globs: &[String]) -> String {
    let quoted: Vec<String> = globs.iter().map(|g| format!("{g:?}")).collect();
    format!("[side_effects] safe = [{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str) -> Request {
        Request {
            method: method.into(),
            uri: uri.into(),
            ..Request::default()
        }
    }

    #[test]
    fn declared_reads_are_safe_and_unsafe_wins() {
        let s = Safety::new(
            vec!["POST /rpc/*/Get*".into(), "POST /rpc/search/*".into()],
            vec!["POST /rpc/*/GetAndLock*".into(), "GET /logout".into()],
            HashSet::from(["/shop.Catalog/ListItems".to_string()]),
        );
        let get = req("POST", "/rpc/catalog/GetItem");
        assert_eq!(
            s.safe(&get, "POST /rpc/catalog/GetItem"),
            Some(Safe::Declared)
        );
        // A templated interface key still matches through the request's own path.
        assert_eq!(
            s.safe(
                &req("POST", "/rpc/search/Query?x=1"),
                "POST /rpc/search/{name}"
            ),
            Some(Safe::Declared)
        );
        assert_eq!(
            s.safe(
                &req("POST", "/rpc/orders/Create"),
                "POST /rpc/orders/Create"
            ),
            None
        );
        assert_eq!(
            s.safe(
                &req("POST", "/rpc/stock/GetAndLockItem"),
                "POST /rpc/stock/GetAndLockItem"
            ),
            None
        );
        assert_eq!(s.safe(&req("GET", "/logout"), "GET /logout"), None);
        assert_eq!(s.safe(&req("GET", "/a"), "GET /a"), Some(Safe::Method));
        assert_eq!(
            s.safe(
                &req("POST", "/shop.Catalog/ListItems"),
                "POST /shop.Catalog/ListItems"
            ),
            Some(Safe::Idempotent)
        );
        assert_eq!(
            s.safe(&req("POST", "/shop.Catalog/Buy"), "POST /shop.Catalog/Buy"),
            None
        );
        assert!(!Safety::default().is_safe(&get, "POST /rpc/catalog/GetItem"));
    }

    #[test]
    fn names_that_read_like_reads() {
        for yes in [
            "POST /rpc/catalog/GetItem",
            "POST /pkg.Orders/ListOrders",
            "POST /api/search_products",
            "POST /rpc/users/BatchGetUsers",
            "POST /rpc/x/Count",
            "POST /rpc/x/get-item/",
        ] {
            assert!(reads_like_read(yes), "{yes}");
        }
        for no in [
            "POST /rpc/orders/CreateOrder",
            "POST /rpc/travel/Getaway",
            "POST /rpc/x/Listen",
            "POST /rpc/x/UpdateItem",
            "POST /",
        ] {
            assert!(!reads_like_read(no), "{no}");
        }
    }
}
