//! Reads a recipe's `model NAME { ... }` block into a [`Config`], reporting every mistake against the
//! span of the setting at fault:
//!
//! ```kdl
//! model tiny-moe {
//!     preset "tiny"                                // optional; the settings below override it
//!     vocab 4096
//!     layers 8
//!     d-model 256
//!     heads 8 kv-heads=2
//!     ffn 704                                      // dense hidden size, or one whole expert's
//!     experts 16 active=4 segments=2 shared=1      // fine-grained MoE; omit for a dense FFN
//!     attention window=128 full-every=4            // or `attention full`
//!     kv-share #true
//!     rope-base 10000
//!     max-seq 512
//!     norm-eps 1e-5
//!     tie-embeddings #false
//! }
//! ```
//!
//! Without a preset, `vocab`, `layers`, `d-model` and `heads` are required; the rest default to
//! kv-heads = heads, ffn = 8/3 d-model (rounded up to 64), a dense FFN, full attention, no KV sharing,
//! rope-base 10000, max-seq 2048, norm-eps 1e-5 and untied embeddings. The result is canonical, so
//! writing a preset's value out explicitly never changes the stage's fingerprint.

use std::collections::{BTreeMap, BTreeSet};

use yiflow_dsl::{KdlNode, NodeExt, RecipeError, Sink, SourceSpan, did_you_mean};

use super::config::{AttentionLayout, Config, Experts};

/// The settings a `model` block accepts.
const SETTINGS: &[&str] = &[
    "preset",
    "vocab",
    "layers",
    "d-model",
    "heads",
    "ffn",
    "experts",
    "attention",
    "kv-share",
    "rope-base",
    "max-seq",
    "norm-eps",
    "tie-embeddings",
];

/// The full-attention period a window gets when none was ever given: the report's 3:1 layout.
const DEFAULT_FULL_EVERY: usize = 4;

/// A configuration being read: what a preset gave, overridden setting by setting.
#[derive(Default)]
struct Draft {
    vocab: Option<usize>,
    layers: Option<usize>,
    d_model: Option<usize>,
    heads: Option<usize>,
    kv_heads: Option<usize>,
    ffn: Option<usize>,
    experts: Option<Experts>,
    attention: Option<AttentionLayout>,
    kv_share: Option<bool>,
    rope_base: Option<f64>,
    max_seq: Option<usize>,
    norm_eps: Option<f64>,
    tie_embeddings: Option<bool>,
}

impl Draft {
    fn from_preset(c: Config) -> Self {
        Self {
            vocab: Some(c.vocab),
            layers: Some(c.layers),
            d_model: Some(c.d_model),
            heads: Some(c.heads),
            kv_heads: Some(c.kv_heads),
            ffn: Some(c.ffn),
            experts: c.experts,
            attention: Some(c.attention),
            kv_share: Some(c.kv_share),
            rope_base: Some(c.rope_base),
            max_seq: Some(c.max_seq),
            norm_eps: Some(c.norm_eps),
            tie_embeddings: Some(c.tie_embeddings),
        }
    }
}

/// Where each setting was written, to point validation errors at it.
struct Spans {
    by_field: BTreeMap<&'static str, SourceSpan>,
    /// The `preset` line, or the model's name: where a value nobody wrote came from.
    fallback: SourceSpan,
}

impl Spans {
    /// The span of `field`, else of the line it is written on (`active=` on `experts`), else the
    /// fallback.
    fn of(&self, field: &str) -> SourceSpan {
        let line = match field {
            "active" | "segments" | "shared" => "experts",
            "kv-heads" => "heads",
            "window" | "full-every" => "attention",
            other => other,
        };
        self.by_field
            .get(field)
            .or_else(|| self.by_field.get(line))
            .copied()
            .unwrap_or(self.fallback)
    }
}

impl Config {
    /// Decodes a `model NAME { ... }` block. Problems go into `sink` (all of them, each against its
    /// span); the configuration comes back only when there were none.
    pub fn decode(node: &KdlNode, sink: &mut Sink) -> Option<Config> {
        let before = sink.len();
        node.check_children("a `model` block", SETTINGS, sink);
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for child in node.child_nodes() {
            let name = child.node_name();
            if !SETTINGS.contains(&name) {
                continue;
            }
            if !seen.insert(name) {
                sink.push(RecipeError::InvalidValue {
                    message: format!("`{name}` is set twice in this model block"),
                    span: child.name_span(),
                    label: "set again here".to_owned(),
                    help: format!("keep one `{name}` line: which one should win is not clear"),
                });
            }
        }

        let mut spans = Spans {
            by_field: BTreeMap::new(),
            fallback: node.name_span(),
        };
        let preset = node
            .child_nodes()
            .iter()
            .find(|c| c.node_name() == "preset");
        let mut draft = Draft::default();
        if let Some(preset) = preset {
            preset.check_entries(1, &[], sink);
            spans.fallback = preset.name_span();
            if let Some(name) = preset.arg_spanned::<String>(0, sink) {
                if let Some(config) = Config::preset(&name) {
                    draft = Draft::from_preset(config);
                } else {
                    sink.push(RecipeError::InvalidValue {
                        message: format!("unknown model preset `{}`", name.value),
                        span: name.span,
                        label: "no preset has this name".to_owned(),
                        help: did_you_mean(&name.value, Config::PRESETS.iter().copied(), ""),
                    });
                }
            }
        }

        for child in node.child_nodes() {
            decode_setting(child, &mut draft, &mut spans, sink);
        }

        let mut missing = false;
        for (field, value) in [
            ("vocab", draft.vocab),
            ("layers", draft.layers),
            ("d-model", draft.d_model),
            ("heads", draft.heads),
        ] {
            if value.is_none() && !seen.contains(field) {
                missing = true;
                sink.push(RecipeError::MissingValue {
                    what: format!("`{field}` of the model"),
                    span: node.name_span(),
                    help: format!(
                        "add `{field} N` to the block, or start from a preset: `preset \"tiny\"` (one of {})",
                        Config::PRESETS.join(", ")
                    ),
                });
            }
        }
        if sink.len() > before || missing {
            return None;
        }
        let (Some(vocab), Some(layers), Some(d_model), Some(heads)) =
            (draft.vocab, draft.layers, draft.d_model, draft.heads)
        else {
            return None;
        };
        let config = Config {
            vocab,
            layers,
            d_model,
            heads,
            kv_heads: draft.kv_heads.unwrap_or(heads),
            ffn: draft.ffn.unwrap_or_else(|| Config::default_ffn(d_model)),
            experts: draft.experts,
            attention: draft.attention.unwrap_or(AttentionLayout::FULL),
            kv_share: draft.kv_share.unwrap_or(false),
            rope_base: draft.rope_base.unwrap_or(10_000.0),
            max_seq: draft.max_seq.unwrap_or(2048),
            norm_eps: draft.norm_eps.unwrap_or(1e-5),
            tie_embeddings: draft.tie_embeddings.unwrap_or(false),
        }
        .canonical();
        for problem in config.problems() {
            let field = problem.field();
            // A divisibility problem of `ffn` that nobody wrote comes from the segments.
            let span = match field {
                "ffn" if !spans.by_field.contains_key("ffn") => spans.of("segments"),
                _ => spans.of(field),
            };
            sink.push(RecipeError::InvalidValue {
                message: problem.to_string(),
                span,
                label: "not a valid model".to_owned(),
                help: problem.help(),
            });
        }
        (sink.len() == before).then_some(config)
    }
}

/// Applies one setting line to the draft.
fn decode_setting(child: &KdlNode, draft: &mut Draft, spans: &mut Spans, sink: &mut Sink) {
    let name = child.node_name();
    match name {
        "vocab" | "layers" | "d-model" | "ffn" | "max-seq" => {
            child.check_entries(1, &[], sink);
            let Some(value) = child.arg_spanned::<usize>(0, sink) else {
                return;
            };
            let slot = match name {
                "vocab" => &mut draft.vocab,
                "layers" => &mut draft.layers,
                "d-model" => &mut draft.d_model,
                "ffn" => &mut draft.ffn,
                _ => &mut draft.max_seq,
            };
            *slot = Some(value.value);
            spans.by_field.insert(static_name(name), value.span);
        }
        "rope-base" | "norm-eps" => {
            child.check_entries(1, &[], sink);
            let Some(value) = child.arg_spanned::<f64>(0, sink) else {
                return;
            };
            if name == "rope-base" {
                draft.rope_base = Some(value.value);
            } else {
                draft.norm_eps = Some(value.value);
            }
            spans.by_field.insert(static_name(name), value.span);
        }
        "kv-share" | "tie-embeddings" => {
            child.check_entries(1, &[], sink);
            let Some(value) = child.arg::<bool>(0, sink) else {
                return;
            };
            if name == "kv-share" {
                draft.kv_share = Some(value);
            } else {
                draft.tie_embeddings = Some(value);
            }
        }
        "heads" => {
            child.check_entries(1, &["kv-heads"], sink);
            if let Some(heads) = child.arg_spanned::<usize>(0, sink) {
                draft.heads = Some(heads.value);
                spans.by_field.insert("heads", heads.span);
            }
            if let Some(kv) = child.prop_spanned::<usize>("kv-heads", sink) {
                draft.kv_heads = Some(kv.value);
                spans.by_field.insert("kv-heads", kv.span);
            }
        }
        "experts" => decode_experts(child, draft, spans, sink),
        "attention" => decode_attention(child, draft, spans, sink),
        _ => {}
    }
}

/// `experts N active=K segments=S shared=M`: over a preset's MoE, only what is written changes.
fn decode_experts(child: &KdlNode, draft: &mut Draft, spans: &mut Spans, sink: &mut Sink) {
    child.check_entries(1, &["active", "segments", "shared"], sink);
    spans.by_field.insert("experts", child.name_span());
    let count = child.arg_spanned::<usize>(0, sink);
    let active = child.prop_spanned::<usize>("active", sink);
    let segments = child.prop_spanned::<usize>("segments", sink);
    let shared = child.prop_spanned::<usize>("shared", sink);
    for (field, value) in [
        ("active", &active),
        ("segments", &segments),
        ("shared", &shared),
    ] {
        if let Some(v) = value {
            spans.by_field.insert(field, v.span);
        }
    }
    if let Some(count) = &count {
        spans.by_field.insert("experts", count.span);
    }
    let base = draft.experts.clone();
    let Some(active) = active.map(|a| a.value).or(base.as_ref().map(|b| b.active)) else {
        sink.push(RecipeError::MissingValue {
            what: "`active` of `experts`".to_owned(),
            span: child.name_span(),
            help: "say how many experts each token uses, e.g. `experts 16 active=2`".to_owned(),
        });
        return;
    };
    let Some(count) = count else { return };
    draft.experts = Some(Experts {
        count: count.value,
        active,
        segments: segments
            .map(|s| s.value)
            .or(base.as_ref().map(|b| b.segments))
            .unwrap_or(1),
        shared: shared
            .map(|s| s.value)
            .or(base.as_ref().map(|b| b.shared))
            .unwrap_or(0),
    });
}

/// `attention full` or `attention window=W full-every=F`.
fn decode_attention(child: &KdlNode, draft: &mut Draft, spans: &mut Spans, sink: &mut Sink) {
    child.check_entries(1, &["window", "full-every"], sink);
    spans.by_field.insert("attention", child.name_span());
    let mode = child.opt_arg::<String>(0, sink);
    let window = child.prop_spanned::<usize>("window", sink);
    let full_every = child.prop_spanned::<usize>("full-every", sink);
    if let Some(w) = &window {
        spans.by_field.insert("window", w.span);
    }
    if let Some(f) = &full_every {
        spans.by_field.insert("full-every", f.span);
    }
    match mode.as_deref() {
        Some("full") => {
            if let Some(extra) = window.as_ref().or(full_every.as_ref()) {
                sink.push(RecipeError::InvalidValue {
                    message: "`attention full` takes no window".to_owned(),
                    span: extra.span,
                    label: "contradicts `full`".to_owned(),
                    help: "write either `attention full` or `attention window=W full-every=F`"
                        .to_owned(),
                });
            }
            draft.attention = Some(AttentionLayout::FULL);
        }
        Some(other) => sink.push(RecipeError::InvalidValue {
            message: format!("unknown attention layout `{other}`"),
            span: child
                .positional()
                .first()
                .map_or(child.name_span(), |e| e.span()),
            label: "expected `full`".to_owned(),
            help:
                "write `attention full`, or `attention window=W full-every=F` for the hybrid layout"
                    .to_owned(),
        }),
        None => {
            let current = draft.attention.filter(|a| a.window.is_some());
            let Some(window) = window.map(|w| w.value).or(current.and_then(|a| a.window)) else {
                sink.push(RecipeError::MissingValue {
                    what: "`window` of `attention`".to_owned(),
                    span: child.name_span(),
                    help: "write `attention window=W full-every=F` (the report: window=4096 full-every=4), or `attention full`"
                        .to_owned(),
                });
                return;
            };
            let full_every = full_every
                .map(|f| f.value)
                .or(current.map(|a| a.full_every))
                .unwrap_or(DEFAULT_FULL_EVERY);
            draft.attention = Some(AttentionLayout {
                window: Some(window),
                full_every,
            });
        }
    }
}

/// The `'static` name of a setting (span keys outlive the parsed node).
fn static_name(name: &str) -> &'static str {
    SETTINGS
        .iter()
        .copied()
        .find(|s| *s == name)
        .unwrap_or("model")
}

#[cfg(test)]
mod tests {
    use yiflow_dsl::KdlDocument;

    use super::*;

    fn decode(text: &str) -> (Option<Config>, Vec<RecipeError>) {
        let doc: KdlDocument = text.parse().expect("test recipes are valid KDL");
        let mut sink = Sink::new();
        let config = Config::decode(&doc.nodes()[0], &mut sink);
        (config, sink.into_errors())
    }

    fn span_text<'a>(text: &'a str, error: &RecipeError) -> &'a str {
        let span = match error {
            RecipeError::InvalidValue { span, .. }
            | RecipeError::MissingValue { span, .. }
            | RecipeError::WrongType { span, .. }
            | RecipeError::UnknownChild { span, .. } => *span,
            other => panic!("unexpected error {other:?}"),
        };
        &text[span.offset()..span.offset() + span.len()]
    }

    #[test]
    fn the_design_example_decodes_with_defaults_filled_in() {
        let (config, errors) = decode(
            "model tiny-moe {
                vocab 4096
                layers 8
                d-model 256
                heads 8 kv-heads=2
                experts 16 active=4 segments=2
                attention window=128 full-every=4
                kv-share #true
                max-seq 512
            }",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let config = config.unwrap();
        assert_eq!(config.kv_heads, 2);
        assert_eq!(config.ffn, 704);
        assert_eq!(
            config.experts,
            Some(Experts {
                count: 16,
                active: 4,
                segments: 2,
                shared: 0
            })
        );
        assert_eq!(
            config.attention,
            AttentionLayout {
                window: Some(128),
                full_every: 4
            }
        );
        assert!(config.kv_share);
        assert_eq!(config.max_seq, 512);
        assert!((config.rope_base - 10_000.0).abs() < f64::EPSILON);
    }

    #[test]
    fn overrides_apply_over_a_preset_in_any_order() {
        let (config, errors) = decode(
            "model m {
                layers 4
                experts 4
                preset \"tiny\"
                attention full-every=2
                rope-base 500000.0
            }",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let config = config.unwrap();
        let tiny = Config::preset("tiny").unwrap();
        assert_eq!(config.layers, 4);
        // Only the count changed; active, segments and shared come from the preset.
        assert_eq!(
            config.experts,
            Some(Experts {
                count: 4,
                ..tiny.experts.clone().unwrap()
            })
        );
        assert_eq!(
            config.attention,
            AttentionLayout {
                window: Some(16),
                full_every: 2
            }
        );
        assert!((config.rope_base - 500_000.0).abs() < f64::EPSILON);
        assert_eq!(config.d_model, tiny.d_model);
    }

    #[test]
    fn writing_a_preset_out_changes_nothing() {
        let (from_preset, _) = decode("model a { preset \"dense-125m\"; }");
        let (written, errors) = decode(
            "model b {
                vocab 32768; layers 12; d-model 768; heads 12 kv-heads=4; ffn 3328
                attention window=512 full-every=1
                max-seq 2048
            }",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(from_preset, written);
        let (full, _) = decode("model c { preset \"tiny\"; attention full; }");
        assert_eq!(full.unwrap().attention, AttentionLayout::FULL);
    }

    #[test]
    fn every_mistake_is_reported_against_its_setting() {
        let text = "model m {
            preset \"tiny\"
            heads 5
            experts 8 active=9
            windw 3
            kv-share 1
            attention sliding
        }";
        let (config, errors) = decode(text);
        assert!(config.is_none());
        let found: Vec<(String, &str)> = errors
            .iter()
            .map(|e| (e.to_string(), span_text(text, e)))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "`windw` is not a setting of a `model` block".to_owned(),
                    "windw"
                ),
                (
                    "the value of `kv-share` must be #true or #false, found the integer 1"
                        .to_owned(),
                    "1"
                ),
                ("unknown attention layout `sliding`".to_owned(), "sliding"),
            ],
        );
        // Once the syntax is right, the validation problems come, each at its own setting.
        let text = "model m {
            preset \"tiny\"
            heads 5
            experts 8 active=9
            ffn 100
            attention window=8 full-every=3
        }";
        let (_, errors) = decode(text);
        let found: Vec<&str> = errors.iter().map(|e| span_text(text, e)).collect();
        assert_eq!(found, ["5", "5", "active=9", "attention"], "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "d-model 64 is not divisible by heads 5"
        );
        let segments = "model m { preset \"tiny\"; experts 8 segments=3; }";
        let (_, errors) = decode(segments);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(span_text(segments, &errors[0]), "segments=3");
    }

    #[test]
    fn unknown_presets_and_missing_sizes_get_help() {
        let help = |text: &str| match decode(text).1.remove(0) {
            RecipeError::InvalidValue { message, help, .. } => (message, help),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            help("model m { preset \"dense-12m\"; }"),
            (
                "unknown model preset `dense-12m`".to_owned(),
                "did you mean `dense-125m`?".to_owned()
            )
        );
        assert_eq!(
            help("model m { preset \"llama\"; }").1,
            "expected one of `tiny`, `dense-125m`, `moe-125m`"
        );
        let text = "model m { layers 2; d-model 64; }";
        let (_, errors) = decode(text);
        let missing: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            missing,
            [
                "`vocab` of the model is missing",
                "`heads` of the model is missing"
            ]
        );
        assert_eq!(span_text(text, &errors[0]), "model");
        let (_, errors) = decode("model m { vocab 8; layers 2; d-model 64; heads 4; experts 4; }");
        assert_eq!(errors[0].to_string(), "`active` of `experts` is missing");
        let (_, errors) = decode("model m { layers 2; layers 3; preset \"tiny\"; }");
        assert_eq!(
            errors[0].to_string(),
            "`layers` is set twice in this model block"
        );
    }
}
