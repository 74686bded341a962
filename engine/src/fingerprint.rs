//! Stage fingerprints: blake3 over a canonical serialisation of everything that determines a stage's
//! artifact. The key is a plain serialisable struct so that `yiflow plan --explain` can show it and say,
//! field by field, why a stage reruns. Formatting, comments and stage order never reach the key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything a stage's output depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FingerprintKey {
    pub kind: String,
    /// The kind implementation's version.
    pub version: u32,
    /// Canonical parameters (JSON objects serialise with sorted keys).
    pub params: Value,
    /// The recipe's seed.
    pub seed: u64,
    /// Upstream stage name -> content hash of its artifact.
    pub upstream: BTreeMap<String, String>,
    /// Declared file (relative to the recipe's folder) -> content hash.
    pub files: BTreeMap<String, String>,
}

impl FingerprintKey {
    /// The fingerprint: blake3 of the canonical JSON of the key, hex.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("a key always serialises");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// Why a stage whose last run had key `old` must run again with this key, one reason per change.
    pub fn reasons_against(&self, old: &FingerprintKey) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.kind != old.kind {
            reasons.push(format!("kind `{}` -> `{}`", old.kind, self.kind));
        } else if self.version != old.version {
            reasons.push(format!(
                "implementation of `{}` changed (version {} -> {})",
                self.kind, old.version, self.version
            ));
        }
        diff_values("", &old.params, &self.params, &mut reasons);
        if self.seed != old.seed {
            reasons.push(format!("recipe seed {} -> {}", old.seed, self.seed));
        }
        diff_maps("upstream", &old.upstream, &self.upstream, &mut reasons);
        diff_maps("file", &old.files, &self.files, &mut reasons);
        reasons
    }
}

fn diff_maps(
    what: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    reasons: &mut Vec<String>,
) {
    for (name, hash) in new {
        match old.get(name) {
            None => reasons.push(format!("{what} `{name}` added")),
            Some(h) if h != hash => reasons.push(format!("{what} `{name}` changed")),
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        reasons.push(format!("{what} `{name}` removed"));
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn diff_values(path: &str, old: &Value, new: &Value, reasons: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    Some(old_v) => diff_values(&p, old_v, v, reasons),
                    None => reasons.push(format!("param `{p}` added: {}", short(v))),
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                reasons.push(format!("param `{p}` removed"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{path}[{i}]"), x, y, reasons);
            }
        }
        _ if old != new => {
            reasons.push(format!("param `{path}` {} -> {}", short(old), short(new)));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(params: Value) -> FingerprintKey {
        FingerprintKey {
            kind: "pretrain".into(),
            version: 1,
            params,
            seed: 1,
            upstream: BTreeMap::from([("tokenizer".into(), "aa".into())]),
            files: BTreeMap::new(),
        }
    }

    #[test]
    fn fingerprint_ignores_key_order_in_params() {
        let a: Value = serde_json::from_str(r#"{"lr": 0.003, "batch": 32}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"batch": 32, "lr": 0.003}"#).unwrap();
        assert_eq!(key(a).fingerprint(), key(b).fingerprint());
        assert_ne!(
            key(json!({"lr": 0.003})).fingerprint(),
            key(json!({"lr": 0.001})).fingerprint()
        );
    }

    #[test]
    fn reasons_name_each_change() {
        let old = key(json!({"lr": 0.003, "phases": [{"seq": 256}], "gone": 1}));
        let mut new = key(json!({"lr": 0.001, "phases": [{"seq": 512}]}));
        new.upstream.insert("tokenizer".into(), "bb".into());
        new.files.insert("scripts/eval.py".into(), "cc".into());
        assert_eq!(
            new.reasons_against(&old),
            [
                "param `lr` 0.003 -> 0.001",
                "param `phases[0].seq` 256 -> 512",
                "param `gone` removed",
                "upstream `tokenizer` changed",
                "file `scripts/eval.py` added",
            ]
        );
        assert!(old.reasons_against(&old).is_empty());
    }
}
