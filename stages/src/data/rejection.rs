//! Why a filter rule removed a document: the rule's name (the recipe setting that controls it, so the
//! stats read like the recipe) and a short human-readable measurement.

use serde::{Deserialize, Serialize};

/// One rule's verdict against a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub rule: &'static str,
    pub detail: String,
}

impl Rejection {
    pub fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        Self {
            rule,
            detail: detail.into(),
        }
    }
}
