//! Canonical parameters of the `pretrain` kind and their decoding from a recipe (torch-free, so
//! `yiflow check` and `plan` validate them without LibTorch). Every default is filled in, so writing
//! a default out never changes the stage's fingerprint.

use serde::{Deserialize, Serialize};
use yiflow_dsl::{KdlNode, KdlValue, NodeExt, RecipeError, Sink, SourceSpan, Spanned, StageDecl};
use yiflow_engine::DecodeCx;

use crate::model::Config;

/// The three phases of the report's pretraining (Yi-Lightning, §3), in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    /// Warmup, then the LR decays to half of its peak.
    Initial,
    /// Longer sequences, batch size grown when the loss plateaus; LR held.
    Intermediate,
    /// About 12.5% of the tokens; the LR decays fast to its floor.
    Decay,
}

impl PhaseKind {
    pub const NAMES: &[&str] = &["initial", "intermediate", "decay"];

    fn parse(name: &str) -> Option<Self> {
        match name {
            "initial" => Some(Self::Initial),
            "intermediate" => Some(Self::Intermediate),
            "decay" => Some(Self::Decay),
            _ => None,
        }
    }
}

/// Batch growth from the loss: when the loss has not improved by `plateau` (relative) for
/// `patience` steps, the batch doubles, up to `max` sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BatchGrowth {
    pub max: usize,
    pub patience: usize,
    pub plateau: f64,
}

/// One phase, with what it inherits from the previous one filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PhaseParams {
    pub kind: PhaseKind,
    /// Training tokens of the phase.
    pub tokens: u64,
    /// LR at the start of the phase (after warmup).
    pub lr: f64,
    /// LR at the end of the phase.
    pub lr_end: f64,
    /// Steps of linear warmup at the start of the phase.
    pub warmup: usize,
    /// Sequence length.
    pub seq: usize,
    /// Sequences per optimizer step (at the start of the phase).
    pub batch: usize,
    pub batch_growth: Option<BatchGrowth>,
}

/// `adamw beta1=0.9 beta2=0.95 weight-decay=0.1 eps=1e-8`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            weight_decay: 0.1,
            eps: 1e-8,
        }
    }
}

/// `checkpoint every=STEPS keep=K`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointParams {
    pub every: usize,
    pub keep: usize,
}

/// `rollback spike=FACTOR max=N`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackParams {
    pub spike: f64,
    pub max: usize,
}

/// `eval every=STEPS batches=N` (every 0: only at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalParams {
    pub every: usize,
    pub batches: usize,
}

/// Canonical parameters of a pretrain stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PretrainParams {
    pub model: Config,
    pub phases: Vec<PhaseParams>,
    /// Sequences per forward pass; a larger batch accumulates gradients. `None`: the whole batch.
    pub micro_batch: Option<usize>,
    pub adamw: AdamWParams,
    /// Largest global gradient norm (0: no clipping).
    pub clip: f64,
    /// Weight of the MoE load-balancing loss.
    pub aux_loss: f64,
    pub checkpoint: CheckpointParams,
    pub rollback: RollbackParams,
    pub eval: EvalParams,
}

/// Defaults of the first phase when it gives none.
const DEFAULT_LR: f64 = 3e-4;
const DEFAULT_BATCH: usize = 8;
const DEFAULT_SEQ: usize = 256;

/// The settings of a `pretrain` stage.
pub const SETTINGS: &[&str] = &[
    "model",
    "phase",
    "micro-batch",
    "adamw",
    "clip",
    "aux-loss",
    "checkpoint",
    "rollback",
    "eval",
];

/// Reads a token count: an integer or a string such as "160K", "0.8M", "16B".
fn count(value: &Spanned<KdlValue>, what: &str, sink: &mut Sink) -> Option<u64> {
    let n = match &value.value {
        KdlValue::Integer(i) => u64::try_from(*i).ok(),
        KdlValue::String(s) => yiflow_dsl::parse_count(s),
        _ => None,
    };
    match n {
        Some(n) if n > 0 => Some(n),
        _ => {
            sink.push(RecipeError::InvalidValue {
                message: format!("{what} must be a positive count of tokens"),
                span: value.span,
                label: "not a count".to_owned(),
                help: "write an integer or a count such as \"160K\", \"4M\", \"0.8M\" or \"16B\""
                    .to_owned(),
            });
            None
        }
    }
}

fn invalid(sink: &mut Sink, span: SourceSpan, message: String, label: &str, help: &str) {
    sink.push(RecipeError::InvalidValue {
        message,
        span,
        label: label.to_owned(),
        help: help.to_owned(),
    });
}

/// A number property that must lie in `range` (given as text for the message).
fn number(
    node: &KdlNode,
    name: &str,
    ok: impl Fn(f64) -> bool,
    expected: &str,
    sink: &mut Sink,
) -> Option<f64> {
    let v = node.prop_spanned::<f64>(name, sink)?;
    if ok(v.value) {
        Some(v.value)
    } else {
        invalid(
            sink,
            v.span,
            format!(
                "`{name}` of `{}` must be {expected}, not {}",
                node.node_name(),
                v.value
            ),
            "out of range",
            &format!("write `{name}=` with a value {expected}"),
        );
        None
    }
}

/// A whole-number property that must be at least `min`.
fn whole(node: &KdlNode, name: &str, min: usize, sink: &mut Sink) -> Option<usize> {
    let v = node.prop_spanned::<usize>(name, sink)?;
    if v.value >= min {
        Some(v.value)
    } else {
        invalid(
            sink,
            v.span,
            format!(
                "`{name}` of `{}` must be at least {min}, not {}",
                node.node_name(),
                v.value
            ),
            "too small",
            &format!("write `{name}={min}` or more"),
        );
        None
    }
}

/// Decodes a `pretrain` stage's body. Problems go into `sink`; the parameters come back only when
/// the model and the phases could be read.
pub fn decode(stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) -> Option<PretrainParams> {
    check_inputs(stage, cx, sink);
    check_duplicates(stage, sink);
    let model = if let Some(node) = stage.body.iter().find(|n| n.node_name() == "model") {
        node.check_entries(1, &[], sink);
        node.arg_spanned::<String>(0, sink)
            .and_then(|name| cx.model(&name, sink).map(|block| (name, block)))
            .and_then(|(name, block)| Config::decode(block, sink).map(|c| (name, c)))
    } else {
        sink.push(RecipeError::MissingValue {
            what: format!("the model of pretrain stage `{}`", stage.name.value),
            span: stage.name.span,
            help: "add `model NAME` naming a `model NAME { ... }` block of the recipe".to_owned(),
        });
        None
    };
    let mut p = PretrainParams {
        model: Config::preset("tiny")?,
        phases: Vec::new(),
        micro_batch: None,
        adamw: AdamWParams::default(),
        clip: 1.0,
        aux_loss: 0.01,
        checkpoint: CheckpointParams {
            every: 100,
            keep: 2,
        },
        rollback: RollbackParams {
            spike: 3.0,
            max: 20,
        },
        eval: EvalParams {
            every: 0,
            batches: 4,
        },
    };
    let before = sink.len();
    if stage.gpus > 1 {
        invalid(
            sink,
            stage.gpus_span.unwrap_or(stage.name.span),
            format!(
                "{} stage `{}` asks for {} GPUs, but training runs on one device",
                stage.kind.value, stage.name.value, stage.gpus
            ),
            "more than one",
            "set `gpus 1`: data-parallel training over several GPUs is not built yet, and the others would sit idle",
        );
    }
    let max_seq = model.as_ref().map(|(_, c)| c.max_seq);
    for node in &stage.body {
        match node.node_name() {
            "phase" => {
                if let Some(phase) = decode_phase(node, p.phases.last(), max_seq, sink) {
                    p.phases.push(phase);
                }
            }
            "micro-batch" => {
                node.check_entries(1, &[], sink);
                if let Some(v) = node.arg_spanned::<usize>(0, sink) {
                    if v.value == 0 {
                        invalid(
                            sink,
                            v.span,
                            "`micro-batch` must be at least 1".to_owned(),
                            "zero",
                            "write the sequences per forward pass, e.g. `micro-batch 4`",
                        );
                    } else {
                        p.micro_batch = Some(v.value);
                    }
                }
            }
            "adamw" => {
                node.check_entries(0, &["beta1", "beta2", "weight-decay", "eps"], sink);
                let unit = |x: f64| (0.0..1.0).contains(&x);
                let a = &mut p.adamw;
                a.beta1 =
                    number(node, "beta1", unit, "at least 0 and below 1", sink).unwrap_or(a.beta1);
                a.beta2 =
                    number(node, "beta2", unit, "at least 0 and below 1", sink).unwrap_or(a.beta2);
                a.weight_decay = number(
                    node,
                    "weight-decay",
                    |x| (0.0..=1.0).contains(&x),
                    "between 0 and 1",
                    sink,
                )
                .unwrap_or(a.weight_decay);
                a.eps = number(
                    node,
                    "eps",
                    |x| x > 0.0 && x < 1.0,
                    "above 0 and below 1",
                    sink,
                )
                .unwrap_or(a.eps);
            }
            "clip" | "aux-loss" => {
                node.check_entries(1, &[], sink);
                if let Some(v) = node.arg_spanned::<f64>(0, sink) {
                    if v.value >= 0.0 && v.value.is_finite() {
                        if node.node_name() == "clip" {
                            p.clip = v.value;
                        } else {
                            p.aux_loss = v.value;
                        }
                    } else {
                        invalid(
                            sink,
                            v.span,
                            format!("`{}` must be 0 or more, not {}", node.node_name(), v.value),
                            "negative",
                            "0 turns it off",
                        );
                    }
                }
            }
            "checkpoint" => {
                node.check_entries(0, &["every", "keep"], sink);
                p.checkpoint.every = whole(node, "every", 1, sink).unwrap_or(p.checkpoint.every);
                p.checkpoint.keep = whole(node, "keep", 1, sink).unwrap_or(p.checkpoint.keep);
            }
            "rollback" => {
                node.check_entries(0, &["spike", "max"], sink);
                p.rollback.spike =
                    number(node, "spike", |x| x > 1.0, "above 1", sink).unwrap_or(p.rollback.spike);
                p.rollback.max = whole(node, "max", 0, sink).unwrap_or(p.rollback.max);
            }
            "eval" => {
                node.check_entries(0, &["every", "batches"], sink);
                p.eval.every = whole(node, "every", 0, sink).unwrap_or(p.eval.every);
                p.eval.batches = whole(node, "batches", 1, sink).unwrap_or(p.eval.batches);
            }
            _ => {}
        }
    }
    check_phase_order(stage, &p.phases, sink);
    let (_, config) = model?;
    p.model = config;
    (sink.len() == before && !p.phases.is_empty()).then_some(p)
}

/// One input must be the token shards (a `tokenize` stage); the others may only be `bpe` stages (the
/// tokenizer, copied into the artifact). A `command` stage may be either.
fn check_inputs(stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) {
    let kind = |name: &str| cx.recipe.stage(name).map(|s| s.kind.value.as_str());
    let mut tokens = 0;
    for input in &stage.inputs {
        match kind(&input.value) {
            Some("tokenize" | "command") | None => tokens += 1,
            Some("bpe") => {}
            Some(other) => invalid(
                sink,
                input.span,
                format!(
                    "pretrain stage `{}` cannot read a `{other}` stage",
                    stage.name.value
                ),
                "not token shards",
                "give it the `tokenize` stage whose shards it trains on (and optionally the `bpe` stage)",
            ),
        }
    }
    if tokens == 0 && stage.inputs.is_empty() {
        sink.push(RecipeError::MissingValue {
            what: format!("the input of pretrain stage `{}`", stage.name.value),
            span: stage.name.span,
            help: "add `input TOKENS` naming a `tokenize` stage".to_owned(),
        });
    } else if tokens == 0 {
        sink.push(RecipeError::MissingValue {
            what: format!("the token shards of pretrain stage `{}`", stage.name.value),
            span: stage.name.span,
            help: "add the `tokenize` stage to its `input`".to_owned(),
        });
    }
}

/// Every setting but `phase` is written at most once.
fn check_duplicates(stage: &StageDecl, sink: &mut Sink) {
    let mut first: std::collections::BTreeMap<&str, SourceSpan> = std::collections::BTreeMap::new();
    for node in &stage.body {
        let name = node.node_name();
        if name == "phase" || !SETTINGS.contains(&name) {
            continue;
        }
        if let Some(&at) = first.get(name) {
            sink.push(RecipeError::DuplicateSetting {
                setting: name.to_owned(),
                context: format!("pretrain stage `{}`", stage.name.value),
                span: node.name_span(),
                first: at,
                help: format!("keep one `{name}` line"),
            });
        } else {
            first.insert(name, node.name_span());
        }
    }
}

/// Phases run initial -> intermediate -> decay, each at most once, at least one.
fn check_phase_order(stage: &StageDecl, phases: &[PhaseParams], sink: &mut Sink) {
    let nodes: Vec<&KdlNode> = stage
        .body
        .iter()
        .filter(|n| n.node_name() == "phase")
        .collect();
    if nodes.is_empty() {
        sink.push(RecipeError::MissingValue {
            what: format!("the phases of pretrain stage `{}`", stage.name.value),
            span: stage.name.span,
            help: "add e.g. `phase initial tokens=\"4M\" lr=3e-3 warmup=200 seq=256 batch=32`"
                .to_owned(),
        });
        return;
    }
    for pair in phases.windows(2) {
        if pair[1].kind <= pair[0].kind {
            let at = nodes
                .iter()
                .find(|n| {
                    n.positional().first().and_then(|e| e.value().as_string())
                        == Some(phase_name(pair[1].kind))
                })
                .map_or(stage.name.span, |n| n.name_span());
            invalid(
                sink,
                at,
                format!(
                    "phase `{}` comes after `{}`",
                    phase_name(pair[1].kind),
                    phase_name(pair[0].kind)
                ),
                "out of order",
                "write the phases once each, in the order initial, intermediate, decay",
            );
        }
    }
}

fn phase_name(kind: PhaseKind) -> &'static str {
    match kind {
        PhaseKind::Initial => "initial",
        PhaseKind::Intermediate => "intermediate",
        PhaseKind::Decay => "decay",
    }
}

/// `phase KIND tokens=N lr= lr-end= warmup= seq= batch= batch-growth="loss" batch-max= patience= plateau=`
fn decode_phase(
    node: &KdlNode,
    previous: Option<&PhaseParams>,
    max_seq: Option<usize>,
    sink: &mut Sink,
) -> Option<PhaseParams> {
    node.check_entries(
        1,
        &[
            "tokens",
            "lr",
            "lr-end",
            "warmup",
            "seq",
            "batch",
            "batch-growth",
            "batch-max",
            "patience",
            "plateau",
        ],
        sink,
    );
    let before = sink.len();
    let name = node.arg_spanned::<String>(0, sink)?;
    let Some(kind) = PhaseKind::parse(&name.value) else {
        invalid(
            sink,
            name.span,
            format!("unknown phase `{}`", name.value),
            "not a phase",
            &yiflow_dsl::did_you_mean(
                &name.value,
                PhaseKind::NAMES.iter().copied(),
                "the phases are initial, intermediate and decay",
            ),
        );
        return None;
    };
    let tokens = if let Some(v) = node.prop_spanned::<KdlValue>("tokens", sink) {
        count(&v, "`tokens` of `phase`", sink)
    } else {
        sink.push(RecipeError::MissingValue {
            what: format!("`tokens` of phase `{}`", name.value),
            span: node.name_span(),
            help: "say how many tokens the phase trains on, e.g. `tokens=\"4M\"`".to_owned(),
        });
        None
    };
    let positive = |x: f64| x > 0.0 && x.is_finite();
    let lr = number(node, "lr", positive, "above 0", sink);
    let lr_end = number(
        node,
        "lr-end",
        |x| x >= 0.0 && x.is_finite(),
        "0 or more",
        sink,
    );
    let warmup = whole(node, "warmup", 0, sink).unwrap_or(0);
    let seq = node.prop_spanned::<usize>("seq", sink);
    let batch = whole(node, "batch", 1, sink);
    let growth = node.prop_spanned::<String>("batch-growth", sink);
    let batch_max = node.prop_spanned::<usize>("batch-max", sink);
    let patience = whole(node, "patience", 1, sink).unwrap_or(10);
    let plateau = number(
        node,
        "plateau",
        |x| (0.0..1.0).contains(&x),
        "at least 0 and below 1",
        sink,
    )
    .unwrap_or(0.005);

    let start_lr = lr.or(previous.map(|p| p.lr_end)).unwrap_or(DEFAULT_LR);
    let seq_len = seq
        .as_ref()
        .map(|s| s.value)
        .or(previous.map(|p| p.seq))
        .unwrap_or_else(|| DEFAULT_SEQ.min(max_seq.unwrap_or(DEFAULT_SEQ)));
    if let Some(s) = &seq {
        if s.value < 2 {
            invalid(
                sink,
                s.span,
                format!("`seq` must be at least 2, not {}", s.value),
                "too short",
                "write the sequence length in tokens, e.g. `seq=256`",
            );
        } else if let Some(max) = max_seq.filter(|&m| s.value > m) {
            invalid(
                sink,
                s.span,
                format!("`seq={}` is longer than the model's max-seq {max}", s.value),
                "too long",
                "raise `max-seq` in the model block or shorten the phase's sequences",
            );
        }
    }
    let batch = batch.or(previous.map(|p| p.batch)).unwrap_or(DEFAULT_BATCH);
    let batch_growth = match growth {
        None => {
            if let Some(m) = &batch_max {
                invalid(
                    sink,
                    m.span,
                    "`batch-max` needs `batch-growth=\"loss\"`".to_owned(),
                    "no growth",
                    "add `batch-growth=\"loss\"` to the phase, or remove `batch-max`",
                );
            }
            None
        }
        Some(g) if g.value == "none" => None,
        Some(g) if g.value == "loss" => {
            let max = batch_max.as_ref().map_or(batch * 4, |m| m.value);
            if let Some(m) = batch_max.as_ref().filter(|_| max < batch) {
                invalid(
                    sink,
                    m.span,
                    format!("`batch-max={max}` is below the phase's batch {batch}"),
                    "too small",
                    "batch growth only ever doubles the batch: write a larger `batch-max`",
                );
            }
            Some(BatchGrowth {
                max,
                patience,
                plateau,
            })
        }
        Some(g) => {
            invalid(
                sink,
                g.span,
                format!("unknown batch growth `{}`", g.value),
                "expected \"loss\"",
                "write `batch-growth=\"loss\"` (grow when the loss plateaus) or leave it out",
            );
            None
        }
    };
    let lr_end = lr_end.unwrap_or(match kind {
        PhaseKind::Initial => start_lr / 2.0,
        PhaseKind::Intermediate => start_lr,
        PhaseKind::Decay => 0.0,
    });
    if lr_end > start_lr {
        let span = node
            .prop_spanned::<f64>("lr-end", &mut Sink::default())
            .map_or(node.name_span(), |s| s.span);
        invalid(
            sink,
            span,
            format!("`lr-end={lr_end}` is above the phase's LR {start_lr}"),
            "LR would rise",
            "the LR only falls within a phase: lower `lr-end`",
        );
    }
    (sink.len() == before).then_some(PhaseParams {
        kind,
        tokens: tokens?,
        lr: start_lr,
        lr_end,
        warmup,
        seq: seq_len,
        batch,
        batch_growth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testing::{params, problems};

    const HEAD: &str = "model m { preset \"tiny\"; vocab 512; max-seq 256 }\nstage corpus kind=source { synthetic stories docs=10 }\nstage tok kind=bpe { input corpus; vocab 512 }\nstage tokens kind=tokenize { input corpus tok }\n";

    fn decoded(body: &str) -> PretrainParams {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{HEAD}stage p kind=pretrain {{ input tokens tok; model m; {body} }}");
        serde_json::from_value(params(dir.path(), &text, "p")).unwrap()
    }

    fn report(body: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        problems(
            dir.path(),
            &format!("{HEAD}stage p kind=pretrain {{ {body} }}"),
        )
    }

    #[test]
    fn phases_inherit_and_defaults_are_filled_in() {
        let p = decoded(
            "phase initial tokens=\"160K\" lr=3e-3 warmup=20 seq=128 batch=16\n\
             phase intermediate tokens=\"0.08M\" seq=256 batch=8 batch-growth=\"loss\" batch-max=32 patience=10 plateau=0.005\n\
             phase decay tokens=35000 lr-end=0",
        );
        assert_eq!(p.model.vocab, 512);
        let [a, b, c] = p.phases.as_slice() else {
            panic!("{:?}", p.phases)
        };
        assert_eq!(
            (a.kind, a.tokens, a.lr, a.lr_end, a.warmup, a.seq, a.batch),
            (PhaseKind::Initial, 160_000, 3e-3, 1.5e-3, 20, 128, 16)
        );
        assert_eq!(
            (b.tokens, b.lr, b.lr_end, b.seq, b.batch),
            (80_000, 1.5e-3, 1.5e-3, 256, 8)
        );
        assert_eq!(
            b.batch_growth,
            Some(BatchGrowth {
                max: 32,
                patience: 10,
                plateau: 0.005
            })
        );
        assert_eq!(
            (
                c.tokens,
                c.lr,
                c.lr_end,
                c.seq,
                c.batch,
                c.batch_growth.is_none()
            ),
            (35_000, 1.5e-3, 0.0, 256, 8, true)
        );
        assert_eq!(p.adamw, AdamWParams::default());
        assert_eq!((p.clip, p.aux_loss, p.micro_batch), (1.0, 0.01, None));
        assert_eq!(
            p.checkpoint,
            CheckpointParams {
                every: 100,
                keep: 2
            }
        );
        // Writing the defaults out changes nothing.
        let explicit = decoded(
            "phase initial tokens=\"160K\" lr=3e-3 lr-end=1.5e-3 warmup=20 seq=128 batch=16\n\
             phase intermediate tokens=80000 lr=1.5e-3 seq=256 batch=8 batch-growth=\"loss\" batch-max=32\n\
             phase decay tokens=35000 lr-end=0\n\
             adamw beta1=0.9 beta2=0.95 weight-decay=0.1 eps=1e-8; clip 1.0; aux-loss 0.01\n\
             checkpoint every=100 keep=2; rollback spike=3.0 max=20; eval every=0 batches=4",
        );
        assert_eq!(explicit, p);
    }

    #[test]
    fn every_mistake_is_reported_with_help() {
        let r = report(
            "input corpus; model nope\n\
             phase initial tokens=\"lots\" lr=-1 seq=1024 batch=0\n\
             phase warm tokens=10\n\
             phase decay tokens=10 batch-growth=\"fast\"\n\
             phase intermediate tokens=10 batch-max=4\n\
             clip -1; clip 2; checkpoint every=0; adamw beta1=1.5; colour 3",
        );
        for expected in [
            "pretrain stage `p` cannot read a `source` stage",
            "unknown model `nope`",
            "`tokens` of `phase` must be a positive count",
            "`lr` of `phase` must be above 0",
            "`batch` of `phase` must be at least 1",
            "unknown phase `warm`",
            "unknown batch growth `fast`",
            "`batch-max` needs `batch-growth=\"loss\"`",
            "`clip` must be 0 or more",
            "`clip` is set twice",
            "`every` of `checkpoint` must be at least 1",
            "`beta1` of `adamw` must be at least 0 and below 1",
            "`colour` is not a setting",
        ] {
            assert!(r.contains(expected), "missing {expected:?} in:\n{r}");
        }
        let r = report("input tokens; model m; phase initial tokens=100 seq=1024");
        assert!(
            r.contains("`seq=1024` is longer than the model's max-seq 256"),
            "{r}"
        );
        let r = report("input tokens; model m; phase decay tokens=10; phase initial tokens=10");
        assert!(r.contains("phase `initial` comes after `decay`"), "{r}");
        let r = report("model m");
        assert!(
            r.contains("the input of pretrain stage `p` is missing"),
            "{r}"
        );
        assert!(
            r.contains("the phases of pretrain stage `p` is missing"),
            "{r}"
        );
    }
}
