//! Maps stage kind names to their implementations. Adding a kind is one new file in `stages/` and one
//! `register` line there.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Stage;

/// The known stage kinds.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, stage: impl Stage) -> &mut Self {
        self.kinds.insert(stage.kind(), Arc::new(stage));
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Stage>> {
        self.kinds.get(kind)
    }

    /// Kind names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}
