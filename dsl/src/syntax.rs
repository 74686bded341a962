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
        // `tokens=4M`: kdl points at the whole node; point at the value instead.
        "Expected property value" => {
            // The span may start anywhere before the node but stops inside the bad value: look
            // along the whole line it stops in.
            let end = (start + d.span.len()).min(text.len());
            let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
            let rest = &text[line_start..];
            let line = rest.find('\n').map_or(rest, |i| &rest[..i]);
            if let Some((key, value, at)) = bad_property(line) {
                let span = (line_start + at, value.len()).into();
                return Some(RecipeError::Syntax {
                    message: format!("`{value}` is not a valid value"),
                    span,
                    label: "put this in quotes".to_owned(),
                    help: if value.starts_with(|c: char| c.is_ascii_digit()) {
                        format!("a bare word cannot start with a digit: write {key}=\"{value}\"")
                    } else {
                        format!("write {key}=\"{value}\"")
                    },
                });
            }
            default(&message, d.label, d.help)
        }
        // `tokens 4M`, `version 1.0.0`: a word that starts like a number.
        "Expected integer" | "Expected float" | "Expected hexadecimal number" | "Expected octal number"
        | "Expected binary number"
            if snippet.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') =>
        {
            (
                format!("`{snippet}` is not a number"),
                "starts like a number, but is not one".to_owned(),
                format!("to write a word that starts with a digit, put it in quotes: \"{snippet}\""),
            )
        }
        "Expected quoted string" if snippet.contains('\\') => (
            "invalid escape in a string".to_owned(),
            "this string has an unknown `\\` escape".to_owned(),
            "`\\` starts an escape (`\\n`, `\\t`, `\\\"`, `\\\\`): write `\\\\` for a backslash, or use a \
             raw string such as #\"C:\\data\"#"
                .to_owned(),
        ),
        _ => default(&message, d.label, d.help),
    };
    Some(RecipeError::Syntax {
        message,
        span: d.span,
        label,
        help,
    })
}

/// kdl's own message, label and help, in lower case, with our help where kdl has none.
fn default(message: &str, label: Option<String>, help: Option<String>) -> (String, String, String) {
    (
        lowercase_first(if message.is_empty() {
            "invalid KDL"
        } else {
            message
        }),
        label.unwrap_or_else(|| "here".to_owned()),
        help.unwrap_or_else(|| FALLBACK_HELP.to_owned()),
    )
}

/// The first `key=value` in `text` whose value is not valid KDL: the key, the value and the value's
/// offset in `text`.
fn bad_property(text: &str) -> Option<(&str, &str, usize)> {
    let mut at = 0;
    for word in text.split_inclusive(char::is_whitespace) {
        let trimmed = word.trim_end().trim_end_matches([';', '}']);
        if let Some((key, value)) = trimmed.split_once('=')
            && !key.is_empty()
            && !value.is_empty()
            && !value.starts_with('"')
            && kdl::KdlDocument::parse(&format!("n {value}")).is_err()
        {
            return Some((key, value, at + key.len() + 1));
        }
        at += word.len();
    }
    None
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
    fn a_word_that_starts_with_a_digit_is_pointed_at() {
        let found = errors("stage a kind=command { phase tokens=4M lr=3e-3 }");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].0.as_str(), found[0].1.as_str()),
            ("`4M` is not a valid value", "4M")
        );
        assert_eq!(
            found[0].3,
            "a bare word cannot start with a digit: write tokens=\"4M\""
        );
        let found = errors("stage a kind=command { version 1.0.0 }");
        assert_eq!(
            (found[0].0.as_str(), found[0].1.as_str()),
            ("`1.0.0` is not a number", "1.0.0")
        );
    }

    #[test]
    fn other_messages_start_in_lower_case() {
        assert_eq!(lowercase_first("Expected float"), "expected float");
        assert_eq!(lowercase_first("EOF reached"), "EOF reached");
        assert_eq!(lowercase_first(""), "");
    }
}
