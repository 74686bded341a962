//! Collects every [`RecipeError`] of a file so that all of them are reported at once.

use crate::RecipeError;

/// Where decoding steps put the problems they find instead of stopping at the first.
#[derive(Debug, Default)]
pub struct Sink {
    errors: Vec<RecipeError>,
}

impl Sink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, error: RecipeError) {
        self.errors.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn into_errors(self) -> Vec<RecipeError> {
        self.errors
    }

    pub fn extend(&mut self, errors: impl IntoIterator<Item = RecipeError>) {
        self.errors.extend(errors);
    }
}
