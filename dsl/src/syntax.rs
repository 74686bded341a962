//! KDL syntax errors as recipe diagnostics. The kdl crate already reports every syntax error of a
//! file with a span; this rewords the ones recipe authors meet most (an unclosed block or string, a
//! stray `}`, KDL 1.0's bare `true`, a bad escape) so that the label says what is wrong at that spot
//! and the help line says how to fix it, and drops the second report kdl gives for an unclosed block.

use kdl::{KdlDiagnostic, KdlError};

use crate::RecipeError;

/// KDL 2.0 keywords, which must be written with a leading `#`.
const KEYWORDS: &[&str] = &["true", "false", "null", "inf", "-inf", "nan"];

const FALLBACK_HELP: &str =
    "recipes are KDL 2.0 documents (https://kdl.dev): see recipes/quickstart.kdl for an example";

/// Every syntax error kdl found in `text`, reworded where a better message is known.
pub(crate) fn syntax_errors(text: &str, error: KdlError) -> Vec<RecipeError> {
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    for diagnostic in error.diagnostics {
        let key = (diagnostic.span, diagnostic.message.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        if let Some(error) = reword(text, diagnostic) {
            errors.push(error);
        }
    }
    errors
}

fn reword(text: &str, d: KdlDiagnostic) -> Option<RecipeError> {
    let start = d.span.offset();
    let snippet = text.get(start..start + d.span.len()).unwrap_or_default();
    let message = d.message.unwrap_or_default();
    let (message, label, help) = match message.as_str() {
        // kdl reports an unclosed block twice: at its `{` and over its whole body. The first is the
        // one a user can act on.
        "Closing '}' was not found after nodes" => return None,
        "No closing '}' for child block" => (
            "block is never closed".to_owned(),
            "this `{` has no matching `}`".to_owned(),
            "add a `}` after the block's last line".to_owned(),
        ),
        "Unexpected newline in single-line quoted string" => (
            "string is not closed before the end of its line".to_owned(),
            "this string has no closing `\"`".to_owned(),
            "add the closing `\"`; a string over several lines starts with `\"\"\"` and a newline, and \
             ends with `\"\"\"` on a line of its own"
                .to_owned(),
        ),
        "Expected end of document" if snippet.starts_with('}') => (
            "unexpected `}`: no block is open here".to_owned(),
            "unmatched `}`".to_owned(),
            "remove it, or look above for a block closed twice".to_owned(),
        ),
        "Expected identifier string" if KEYWORDS.contains(&snippet) => (
            format!("`{snippet}` must be written `#{snippet}` in KDL 2.0"),
            format!("write `#{snippet}`"),
            "KDL 2.0 writes its keywords with a `#`: #true, #false, #null, #inf, #-inf, #nan".to_owned(),
        ),
        "Expected quoted string" if snippet.contains('\\') => (
            "invalid escape in a string".to_owned(),
            "this string has an unknown `\\` escape".to_owned(),
            "`\\` starts an escape (`\\n`, `\\t`, `\\\"`, `\\\\`): write `\\\\` for a backslash, or use a \
             raw string such as #\"C:\\data\"#"
                .to_owned(),
        ),
        _ => (
            lowercase_first(if message.is_empty() { "invalid KDL" } else { &message }),
            d.label.unwrap_or_else(|| "here".to_owned()),
            d.help.unwrap_or_else(|| FALLBACK_HELP.to_owned()),
        ),
    };
    Some(RecipeError::Syntax {
        message,
        span: d.span,
        label,
        help,
    })
}

/// kdl's messages are capitalised; ours read after "failed to ..." and start in lower case.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        // Leave acronyms ("EOF") alone.
        (Some(first), Some(second)) if !second.is_uppercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<(String, String, String, String)> {
        let error = kdl::KdlDocument::parse(text).expect_err("invalid KDL");
        syntax_errors(text, error)
            .into_iter()
            .map(|e| match e {
                RecipeError::Syntax {
                    message,
                    span,
                    label,
                    help,
                } => {
                    let at = text[span.offset()..span.offset() + span.len()].to_owned();
                    (message, at, label, help)
                }
                other => panic!("not a syntax error: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn an_unclosed_block_is_reported_once_at_its_brace() {
        let found = errors("stage a kind=command {\n    run \"x\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].0.as_str(), found[0].1.as_str()),
            ("block is never closed", "{")
        );
    }

    #[test]
    fn an_unclosed_string_points_at_the_string() {
        let found = errors("stage a kind=command {\n    run \"echo hi\n}\n");
        assert_eq!(
            found[0].0,
            "string is not closed before the end of its line"
        );
        assert!(found[0].1.starts_with("\"echo hi"), "{found:?}");
    }

    #[test]
    fn kdl1_keywords_say_how_to_write_them() {
        let found = errors("stage a kind=command { byte-fallback true }");
        assert_eq!(found[0].0, "`true` must be written `#true` in KDL 2.0");
        assert_eq!(found[0].1, "true");
    }

    #[test]
    fn a_stray_brace_and_a_bad_escape() {
        let found = errors("stage a kind=command { run \"x\" }}");
        assert_eq!(
            (found[0].0.as_str(), found[0].1.as_str()),
            ("unexpected `}`: no block is open here", "}")
        );
        let found = errors("stage a kind=command { run \"C:\\data\" }");
        assert_eq!(found[0].0, "invalid escape in a string");
    }

    #[test]
    fn other_messages_start_in_lower_case() {
        assert_eq!(lowercase_first("Expected float"), "expected float");
        assert_eq!(lowercase_first("EOF reached"), "EOF reached");
        assert_eq!(lowercase_first(""), "");
    }
}
