//! Small typed accessors over KDL nodes (`node.arg::<u32>(0, sink)`, `node.prop::<f64>("lr", sink)`)
//! that turn a missing or mistyped value into a span-labelled [`RecipeError`].

use kdl::{KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use crate::{RecipeError, Sink, Spanned, did_you_mean};

/// A Rust type a KDL value can be decoded into.
pub trait FromValue: Sized {
    /// How the expected type reads in an error ("an integer", "a string").
    const EXPECTED: &'static str;
    /// The decoded value, or `Err(message)` when the value has the right KDL type but is out of range.
    /// `Ok(None)` means the KDL type is wrong.
    fn from_value(value: &KdlValue) -> Result<Option<Self>, String>;

    /// A help line for a value of the wrong KDL type (`found`), when there is something better to say
    /// than "write it as ...": drop the quotes around `"4"`, quote a bare number, round `1.5`.
    fn hint(found: &KdlValue) -> Option<String> {
        let _ = found;
        None
    }
}

impl FromValue for String {
    const EXPECTED: &'static str = "a string";
    fn from_value(value: &KdlValue) -> Result<Option<Self>, String> {
        Ok(value.as_string().map(str::to_owned))
    }
    fn hint(found: &KdlValue) -> Option<String> {
        Some(format!(
            "put it in quotes: \"{}\"",
            found.to_string().trim_start_matches('#')
        ))
    }
}

impl FromValue for bool {
    const EXPECTED: &'static str = "#true or #false";
    fn from_value(value: &KdlValue) -> Result<Option<Self>, String> {
        Ok(value.as_bool())
    }
    fn hint(found: &KdlValue) -> Option<String> {
        match found.as_string() {
            Some("true" | "false") => {
                Some("KDL 2.0 writes booleans #true and #false, without quotes".to_owned())
            }
            _ => Some("write #true or #false".to_owned()),
        }
    }
}

impl FromValue for f64 {
    const EXPECTED: &'static str = "a number";
    fn from_value(value: &KdlValue) -> Result<Option<Self>, String> {
        Ok(match value {
            KdlValue::Float(f) => Some(*f),
            KdlValue::Integer(i) => Some(*i as f64),
            _ => None,
        })
    }
    fn hint(found: &KdlValue) -> Option<String> {
        match found.as_string() {
            Some(s) if s.trim().parse::<f64>().is_ok() => {
                Some(format!("remove the quotes: {}", s.trim()))
            }
            _ => Some("write a number such as 0.5 or 3e-4, without quotes".to_owned()),
        }
    }
}

/// The help for an integer setting given a value of another type.
fn integer_hint(found: &KdlValue) -> String {
    match found {
        KdlValue::String(s) if s.trim().parse::<i128>().is_ok() => {
            format!("remove the quotes: {}", s.trim())
        }
        KdlValue::Float(f) if f.is_finite() => {
            format!("it takes no fraction: write {} or {}", f.floor(), f.ceil())
        }
        _ => "write a whole number such as 2, without quotes".to_owned(),
    }
}

/// A KDL value of any type, for settings that accept several (`dedup minhash threshold=0.8`).
impl FromValue for KdlValue {
    const EXPECTED: &'static str = "a value";
    fn from_value(value: &KdlValue) -> Result<Option<Self>, String> {
        Ok(Some(value.clone()))
    }
}

macro_rules! integer_from_value {
    ($($t:ty => $expected:literal),*) => {$(
        impl FromValue for $t {
            const EXPECTED: &'static str = $expected;
            fn from_value(value: &KdlValue) -> Result<Option<Self>, String> {
                match value {
                    KdlValue::Integer(i) => <$t>::try_from(*i)
                        .map(Some)
                        .map_err(|_| format!("{i} is out of range for {}", $expected)),
                    _ => Ok(None),
                }
            }
            fn hint(found: &KdlValue) -> Option<String> {
                Some(integer_hint(found))
            }
        }
    )*};
}
integer_from_value!(
    u8 => "a small whole number (0-255)",
    u32 => "a whole number",
    u64 => "a whole number",
    usize => "a whole number",
    i64 => "an integer"
);

/// How a KDL value's type reads in an error.
pub fn describe(value: &KdlValue) -> String {
    match value {
        KdlValue::String(s) => format!("the string \"{s}\""),
        KdlValue::Integer(i) => format!("the integer {i}"),
        KdlValue::Float(f) => format!("the number {f}"),
        KdlValue::Bool(b) => format!("#{b}"),
        KdlValue::Null => "#null".to_owned(),
    }
}

/// Parses counts such as `"4M"`, `"0.8M"`, `"2B"`, `"500K"` or `"1000"` (tokens, documents).
pub fn parse_count(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    let (number, factor) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 1e3),
        'M' | 'm' => (&text[..text.len() - 1], 1e6),
        'B' | 'b' | 'G' | 'g' => (&text[..text.len() - 1], 1e9),
        'T' | 't' => (&text[..text.len() - 1], 1e12),
        _ => (text.as_str(), 1.0),
    };
    let value = number.parse::<f64>().ok()? * factor;
    (value.is_finite() && value >= 0.0).then(|| value.round() as u64)
}

fn decode_entry<T: FromValue>(entry: &KdlEntry, what: &str, sink: &mut Sink) -> Option<T> {
    match T::from_value(entry.value()) {
        Ok(Some(v)) => Some(v),
        Ok(None) => {
            sink.push(RecipeError::WrongType {
                what: what.to_owned(),
                expected: T::EXPECTED.to_owned(),
                found: describe(entry.value()),
                span: entry.span(),
                help: T::hint(entry.value())
                    .unwrap_or_else(|| format!("write {what} as {}", T::EXPECTED)),
            });
            None
        }
        Err(message) => {
            sink.push(RecipeError::InvalidValue {
                message: format!("{what}: {message}"),
                span: entry.span(),
                label: "out of range".to_owned(),
                help: format!("write {what} as {}", T::EXPECTED),
            });
            None
        }
    }
}

/// Typed, span-reporting access to a node's arguments, properties and children.
pub trait NodeExt {
    /// The node's name.
    fn node_name(&self) -> &str;
    /// The span of the node's name, the best place to point at for the node as a whole.
    fn name_span(&self) -> SourceSpan;
    /// Positional arguments (entries without a name), in order.
    fn positional(&self) -> Vec<&KdlEntry>;
    /// Argument `i`; reports a missing or mistyped value.
    fn arg<T: FromValue>(&self, i: usize, sink: &mut Sink) -> Option<T>;
    /// Argument `i` with its span; reports a missing or mistyped value.
    fn arg_spanned<T: FromValue>(&self, i: usize, sink: &mut Sink) -> Option<Spanned<T>>;
    /// Argument `i` if present; reports only a mistyped value.
    fn opt_arg<T: FromValue>(&self, i: usize, sink: &mut Sink) -> Option<T>;
    /// Every positional argument, each with its span; mistyped ones are reported and skipped.
    fn args<T: FromValue>(&self, sink: &mut Sink) -> Vec<Spanned<T>>;
    /// Property `name` if present; reports a mistyped value.
    fn prop<T: FromValue>(&self, name: &str, sink: &mut Sink) -> Option<T>;
    /// Property `name` with its span if present; reports a mistyped value.
    fn prop_spanned<T: FromValue>(&self, name: &str, sink: &mut Sink) -> Option<Spanned<T>>;
    /// Reports every property whose name is not in `allowed`, and positional arguments beyond `max_args`.
    fn check_entries(&self, max_args: usize, allowed: &[&str], sink: &mut Sink);
    /// The node's children (empty when it has no block).
    fn child_nodes(&self) -> &[KdlNode];
    /// Reports every child whose name is not in `allowed`, in a help line that suggests the closest.
    fn check_children(&self, context: &str, allowed: &[&str], sink: &mut Sink);
}

impl NodeExt for KdlNode {
    fn node_name(&self) -> &str {
        self.name().value()
    }

    fn name_span(&self) -> SourceSpan {
        self.name().span()
    }

    fn positional(&self) -> Vec<&KdlEntry> {
        self.entries()
            .iter()
            .filter(|e| e.name().is_none())
            .collect()
    }

    fn arg<T: FromValue>(&self, i: usize, sink: &mut Sink) -> Option<T> {
        self.arg_spanned(i, sink).map(|s| s.value)
    }

    fn arg_spanned<T: FromValue>(&self, i: usize, sink: &mut Sink) -> Option<Spanned<T>> {
        let what = format!("the value of `{}`", self.node_name());
        if let Some(entry) = self.positional().get(i) {
            decode_entry::<T>(entry, &what, sink).map(|v| Spanned::new(v, entry.span()))
        } else {
            sink.push(RecipeError::MissingValue {
                what,
                span: self.name_span(),
                help: format!(
                    "write it after the name, e.g. `{} <{}>`",
                    self.node_name(),
                    T::EXPECTED
                ),
            });
            None
        }
    }

    fn opt_arg<T: FromValue>(&self, i: usize, sink: &mut Sink) -> Option<T> {
        let what = format!("the value of `{}`", self.node_name());
        self.positional()
            .get(i)
            .and_then(|entry| decode_entry::<T>(entry, &what, sink))
    }

    fn args<T: FromValue>(&self, sink: &mut Sink) -> Vec<Spanned<T>> {
        let what = format!("each value of `{}`", self.node_name());
        self.positional()
            .into_iter()
            .filter_map(|entry| {
                decode_entry::<T>(entry, &what, sink).map(|v| Spanned::new(v, entry.span()))
            })
            .collect()
    }

    fn prop<T: FromValue>(&self, name: &str, sink: &mut Sink) -> Option<T> {
        self.prop_spanned(name, sink).map(|s| s.value)
    }

    fn prop_spanned<T: FromValue>(&self, name: &str, sink: &mut Sink) -> Option<Spanned<T>> {
        let entry = self
            .entries()
            .iter()
            .rev()
            .find(|e| e.name().is_some_and(|n| n.value() == name))?;
        let what = format!("`{}` of `{}`", name, self.node_name());
        decode_entry::<T>(entry, &what, sink).map(|v| Spanned::new(v, entry.span()))
    }

    fn check_entries(&self, max_args: usize, allowed: &[&str], sink: &mut Sink) {
        let positional = self.positional();
        if let (Some(first), Some(last)) = (positional.get(max_args), positional.last()) {
            let takes = match max_args {
                0 => "no value".to_owned(),
                1 => "one value".to_owned(),
                n => format!("at most {n} values"),
            };
            let extra = positional.len() - max_args;
            let start = first.span().offset();
            let end = last.span().offset() + last.span().len();
            let words: Option<Vec<&str>> =
                positional.iter().map(|e| e.value().as_string()).collect();
            // `run echo hi` is a forgotten pair of quotes more often than a value too many.
            let help = match words {
                Some(words) if max_args == 1 => format!(
                    "if this is one value, quote it as a whole: \"{}\"",
                    words.join(" ")
                ),
                _ if extra == 1 => "remove this value".to_owned(),
                _ => "remove these values".to_owned(),
            };
            sink.push(RecipeError::InvalidValue {
                message: format!("`{}` takes {takes}", self.node_name()),
                span: (start, end - start).into(),
                label: if extra == 1 {
                    "unexpected value"
                } else {
                    "unexpected values"
                }
                .to_owned(),
                help,
            });
        }
        for entry in self.entries() {
            if let Some(name) = entry.name()
                && !allowed.contains(&name.value())
            {
                sink.push(RecipeError::UnknownChild {
                    child: format!("{}=", name.value()),
                    context: format!("`{}`", self.node_name()),
                    span: entry.span(),
                    help: did_you_mean(
                        name.value(),
                        allowed.iter().copied(),
                        &format!("`{}` takes no properties", self.node_name()),
                    ),
                });
            }
        }
    }

    fn child_nodes(&self) -> &[KdlNode] {
        self.children().map_or(&[], |d| d.nodes())
    }

    fn check_children(&self, context: &str, allowed: &[&str], sink: &mut Sink) {
        for child in self.child_nodes() {
            if !allowed.contains(&child.node_name()) {
                sink.push(RecipeError::UnknownChild {
                    child: child.node_name().to_owned(),
                    context: context.to_owned(),
                    span: child.name_span(),
                    help: did_you_mean(
                        child.node_name(),
                        allowed.iter().copied(),
                        "it takes no settings",
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_suffixes() {
        assert_eq!(parse_count("4M"), Some(4_000_000));
        assert_eq!(parse_count("0.8M"), Some(800_000));
        assert_eq!(parse_count("2B"), Some(2_000_000_000));
        assert_eq!(parse_count("1_000"), Some(1000));
        assert_eq!(parse_count("12k"), Some(12_000));
        assert_eq!(parse_count("x"), None);
        assert_eq!(parse_count("-3"), None);
    }

    #[test]
    fn typed_access_reports_problems() {
        let doc: kdl::KdlDocument = "phase initial tokens=\"4M\" lr=3e-3 warmup=200 bogus=1"
            .parse()
            .unwrap();
        let node = &doc.nodes()[0];
        let mut sink = Sink::new();
        assert_eq!(node.arg::<String>(0, &mut sink).as_deref(), Some("initial"));
        assert_eq!(node.prop::<f64>("lr", &mut sink), Some(3e-3));
        assert_eq!(node.prop::<u32>("warmup", &mut sink), Some(200));
        assert!(sink.is_empty());
        assert_eq!(node.prop::<u32>("tokens", &mut sink), None);
        assert_eq!(node.arg::<u32>(3, &mut sink), None);
        node.check_entries(1, &["tokens", "lr", "warmup"], &mut sink);
        let errors = sink.into_errors();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(matches!(errors[0], RecipeError::WrongType { .. }));
        assert!(matches!(errors[1], RecipeError::MissingValue { .. }));
        assert!(matches!(errors[2], RecipeError::UnknownChild { .. }));
    }

    #[test]
    fn a_wrong_type_says_how_to_write_the_value() {
        let doc: kdl::KdlDocument =
            "a \"12\"; b \"two\"; c 1.5; d 42; e \"true\"; f \"3e-4\"; g 1 2"
                .parse()
                .unwrap();
        let help = |i: usize, decode: &dyn Fn(&KdlNode, &mut Sink)| {
            let mut sink = Sink::new();
            decode(&doc.nodes()[i], &mut sink);
            match sink.into_errors().pop() {
                Some(
                    RecipeError::WrongType { help, .. } | RecipeError::InvalidValue { help, .. },
                ) => help,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            help(0, &|n, s| {
                let _ = n.arg::<u32>(0, s);
            }),
            "remove the quotes: 12"
        );
        assert_eq!(
            help(1, &|n, s| {
                let _ = n.arg::<u64>(0, s);
            }),
            "write a whole number such as 2, without quotes"
        );
        assert_eq!(
            help(2, &|n, s| {
                let _ = n.arg::<usize>(0, s);
            }),
            "it takes no fraction: write 1 or 2"
        );
        assert_eq!(
            help(3, &|n, s| {
                let _ = n.arg::<String>(0, s);
            }),
            "put it in quotes: \"42\""
        );
        assert!(
            help(4, &|n, s| {
                let _ = n.arg::<bool>(0, s);
            })
            .contains("#true")
        );
        assert_eq!(
            help(5, &|n, s| {
                let _ = n.arg::<f64>(0, s);
            }),
            "remove the quotes: 3e-4"
        );
        assert_eq!(
            help(6, &|n, s| n.check_entries(1, &[], s)),
            "remove this value"
        );
        assert_eq!(
            help(6, &|n, s| n.check_entries(0, &[], s)),
            "remove these values"
        );
    }

    #[test]
    fn unquoted_words_are_one_problem_with_a_quoting_hint() {
        let text = "run python3 train.py --lr 3";
        let doc: kdl::KdlDocument = text.parse().unwrap();
        let mut sink = Sink::new();
        doc.nodes()[0].check_entries(1, &[], &mut sink);
        let errors = sink.into_errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let RecipeError::InvalidValue {
            message,
            span,
            help,
            ..
        } = &errors[0]
        else {
            panic!("{errors:?}")
        };
        assert_eq!(message, "`run` takes one value");
        assert_eq!(
            &text[span.offset()..span.offset() + span.len()],
            "train.py --lr 3"
        );
        // `3` is a number, so the words are not all strings: no quoting hint.
        assert_eq!(help, "remove these values");

        let doc: kdl::KdlDocument = "run echo hi".parse().unwrap();
        let mut sink = Sink::new();
        doc.nodes()[0].check_entries(1, &[], &mut sink);
        let Some(RecipeError::InvalidValue { help, .. }) = sink.into_errors().pop() else {
            panic!()
        };
        assert_eq!(
            help,
            "if this is one value, quote it as a whole: \"echo hi\""
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("tokenzier", ["corpus", "tokenizer"], "x"),
            "did you mean `tokenizer`?"
        );
        assert_eq!(
            did_you_mean("zzz", ["a", "b"], "x"),
            "expected one of `a`, `b`"
        );
        assert_eq!(did_you_mean("zzz", [], "none"), "none");
    }
}
