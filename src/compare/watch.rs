//! Whether the field paths and header names of the user's rules ever met anything: a rule
//! whose path has a typo (`$.prise`) changes nothing, and a run that says nothing about it
//! reads as if the rule worked. Each named thing carries one flag, set the first time an
//! answer compared under that rule holds it; after that it costs one load per exchange, so
//! the workers' threads share the flags instead of counting and merging.

use super::pathpat::PathPattern;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a rule names.
#[derive(Debug)]
pub enum Target {
    /// A body field path.
    Path(PathPattern),
    /// A header name, lower case.
    Header(String),
}

/// One thing a rule names, and whether a compared answer held it.
#[derive(Debug)]
pub struct Watched {
    /// What is looked for.
    pub target: Target,
    seen: AtomicBool,
}

impl Watched {
    /// A target not met yet.
    pub fn new(target: Target) -> Arc<Self> {
        Arc::new(Watched {
            target,
            seen: AtomicBool::new(false),
        })
    }

    /// True once a compared answer held it.
    pub fn seen(&self) -> bool {
        self.seen.load(Ordering::Relaxed)
    }

    fn mark(&self) {
        self.seen.store(true, Ordering::Relaxed);
    }
}

/// The targets of the rules that apply to one interface.
#[derive(Debug, Default)]
pub struct Watch {
    items: Vec<Arc<Watched>>,
    /// Set once every item was met, so a finished watch is one load per answer.
    done: AtomicBool,
}

impl Watch {
    /// A watch over `items`.
    pub fn new(items: Vec<Arc<Watched>>) -> Self {
        let done = AtomicBool::new(items.is_empty());
        Watch { items, done }
    }

    /// True while some target was never met. Comparisons take no shortcut past identical
    /// bodies while this holds, since an identical field is still a field the rule acts on.
    pub fn pending(&self) -> bool {
        if self.done.load(Ordering::Relaxed) {
            return false;
        }
        if self.items.iter().all(|w| w.seen()) {
            self.done.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Notes the fields of one compared document.
    pub fn note_document(&self, doc: &Value) {
        if !self.pending() {
            return;
        }
        for w in &self.items {
            if let Target::Path(p) = &w.target {
                if !w.seen() && p.found_in(doc) {
                    w.mark();
                }
            }
        }
    }

    /// Notes the header names of one compared answer.
    pub fn note_headers(&self, headers: &[(String, String)]) {
        if !self.pending() {
            return;
        }
        for w in &self.items {
            if let Target::Header(h) = &w.target {
                if !w.seen() && headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(h)) {
                    w.mark();
                }
            }
        }
    }
}
