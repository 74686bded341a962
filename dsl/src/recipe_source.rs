//! The text of a recipe file as miette reads it to render snippets.
//!
//! A thin wrapper over the text that reports how many lines a snippet really covers. miette 7.6's
//! own `str` source returns the line count from the start of the file instead, so its renderer merges
//! labels that are far apart into one snippet holding every line between them (a duplicate stage
//! defined 200 lines after the first would print all 200). With the true count, labels that are near
//! each other still share a snippet and distant ones get a snippet each.

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// A recipe's name and text, the `#[source_code]` of [`crate::RecipeErrors`].
#[derive(Debug, Clone)]
pub struct RecipeSource {
    name: String,
    text: String,
}

impl RecipeSource {
    pub fn new(name: &str, text: &str) -> Self {
        Self {
            name: name.to_owned(),
            text: text.to_owned(),
        }
    }

    /// The name the file is reported under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The recipe text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl SourceCode for RecipeSource {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        let data = inner.data();
        let newlines = data.split(|&b| b == b'\n').count() - 1;
        let lines = (newlines + usize::from(!data.ends_with(b"\n"))).max(1);
        let contents = MietteSpanContents::new_named(
            self.name.clone(),
            data,
            *inner.span(),
            inner.line(),
            inner.column(),
            lines,
        )
        .with_language("kdl");
        Ok(Box::new(contents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_lines_of_the_snippet_only() {
        let text = "a\nb\nc\nd\ne\nf\n";
        let source = RecipeSource::new("r.kdl", text);
        // The span `e` (line 4, 0-based) with one line of context each side: lines d, e, f.
        let contents = source.read_span(&(8, 1).into(), 1, 1).unwrap();
        assert_eq!(contents.line(), 3);
        assert_eq!(contents.line_count(), 3);
        assert_eq!(std::str::from_utf8(contents.data()).unwrap(), "d\ne\nf\n");
        assert_eq!(contents.name(), Some("r.kdl"));
        // miette's own count runs from the start of the file: the reason this type exists.
        assert_eq!(
            text.read_span(&(8, 1).into(), 1, 1).unwrap().line_count(),
            6
        );
    }
}
