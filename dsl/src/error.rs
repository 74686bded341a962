//! Every mistake a user can make in a recipe, as a miette diagnostic with a code, a labelled span and a
//! help line, and the report that gathers all of a file's mistakes.

use miette::{Diagnostic, LabeledSpan, SourceSpan};
use thiserror::Error;

use crate::RecipeSource;

/// One problem in a recipe file.
#[derive(Debug, Error, Diagnostic)]
pub enum RecipeError {
    /// The text is not valid KDL 2.0.
    #[error("{message}")]
    #[diagnostic(code(yiflow::recipe::syntax), help("{help}"))]
    Syntax {
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        help: String,
    },

    #[error("unknown stage kind `{kind}`")]
    #[diagnostic(code(yiflow::recipe::unknown_kind), help("{help}"))]
    UnknownKind {
        kind: String,
        #[label("no stage kind has this name")]
        span: SourceSpan,
        help: String,
    },

    #[error("stage `{stage}` reads `{input}`, which is not a stage of this recipe")]
    #[diagnostic(code(yiflow::recipe::unknown_input), help("{help}"))]
    UnknownInput {
        stage: String,
        input: String,
        #[label("no stage has this name")]
        span: SourceSpan,
        help: String,
    },

    #[error("stage `{name}` is defined twice")]
    #[diagnostic(
        code(yiflow::recipe::duplicate_stage),
        help("stage names must be unique: rename one of them")
    )]
    DuplicateStage {
        name: String,
        #[label(primary, "defined again here")]
        span: SourceSpan,
        #[label("first defined here")]
        first: SourceSpan,
    },

    /// `cycle` reads `a -> b -> c -> a`, each stage followed by one that reads it.
    #[error("stages read each other in a cycle: {cycle}")]
    #[diagnostic(
        code(yiflow::recipe::cycle),
        help(
            "each stage reads the one before it, so none of them can run first: remove one of the inputs labelled above"
        )
    )]
    Cycle {
        cycle: String,
        #[label(collection)]
        spans: Vec<LabeledSpan>,
    },

    #[error("stage `{name}` reads its own output")]
    #[diagnostic(
        code(yiflow::recipe::cycle),
        help("a stage cannot run before itself: remove `{name}` from its `input` line")
    )]
    SelfCycle {
        name: String,
        #[label("`{name}` is an input of itself")]
        span: SourceSpan,
    },

    /// A setting that takes one value, written twice in the same block.
    #[error("`{setting}` is set twice in {context}")]
    #[diagnostic(code(yiflow::recipe::duplicate_setting), help("{help}"))]
    DuplicateSetting {
        setting: String,
        context: String,
        #[label(primary, "set again here")]
        span: SourceSpan,
        #[label("first set here")]
        first: SourceSpan,
        help: String,
    },

    #[error("{what} is missing")]
    #[diagnostic(code(yiflow::recipe::missing_value), help("{help}"))]
    MissingValue {
        what: String,
        #[label("required here")]
        span: SourceSpan,
        help: String,
    },

    #[error("{what} must be {expected}, found {found}")]
    #[diagnostic(code(yiflow::recipe::wrong_type), help("{help}"))]
    WrongType {
        what: String,
        expected: String,
        found: String,
        #[label("expected {expected}")]
        span: SourceSpan,
        help: String,
    },

    #[error("`{child}` is not a setting of {context}")]
    #[diagnostic(code(yiflow::recipe::unknown_child), help("{help}"))]
    UnknownChild {
        child: String,
        context: String,
        #[label("unknown setting")]
        span: SourceSpan,
        help: String,
    },

    #[error("`{pattern}` matches no file")]
    #[diagnostic(code(yiflow::recipe::no_match), help("{help}"))]
    GlobNoMatch {
        pattern: String,
        #[label("matches no file")]
        span: SourceSpan,
        help: String,
    },

    #[error("unknown model `{name}`")]
    #[diagnostic(code(yiflow::recipe::unknown_model), help("{help}"))]
    UnknownModel {
        name: String,
        #[label("no `model {name}` block in this recipe")]
        span: SourceSpan,
        help: String,
    },

    /// A value of the right type that is still not acceptable (out of range, malformed, ...).
    #[error("{message}")]
    #[diagnostic(code(yiflow::recipe::invalid_value), help("{help}"))]
    InvalidValue {
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        help: String,
    },
}

/// All the problems of one recipe file, rendered together against its source, in the order they
/// appear in the file.
#[derive(Debug, Error, Diagnostic)]
#[error("{} in recipe {name}", count_problems(.errors.len()))]
#[diagnostic(code(yiflow::recipe::invalid))]
pub struct RecipeErrors {
    pub name: String,
    #[source_code]
    pub src: RecipeSource,
    #[related]
    pub errors: Vec<RecipeError>,
}

fn count_problems(n: usize) -> String {
    if n == 1 {
        "1 problem".to_owned()
    } else {
        format!("{n} problems")
    }
}

impl RecipeErrors {
    /// Gathers `errors` (found by any step, in any order) into one report, sorted by where they are
    /// in the file so that a user can work through them from the top.
    pub fn new(name: &str, text: &str, mut errors: Vec<RecipeError>) -> Self {
        errors.sort_by_key(RecipeError::offset);
        Self {
            name: name.to_owned(),
            src: RecipeSource::new(name, text),
            errors,
        }
    }
}

impl RecipeError {
    /// Where the problem starts in the file: its first labelled span, which is also where the
    /// rendered report first points (a duplicate stage sorts at its first definition).
    pub fn offset(&self) -> usize {
        self.labels()
            .and_then(|labels| labels.map(|l| l.offset()).min())
            .unwrap_or(0)
    }
}

/// A "did you mean" help line: the closest candidate by edit distance, if any is close enough,
/// otherwise the list of candidates (or `fallback` when there are none).
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    fallback: &str,
) -> String {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(wrong, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(wrong.len()) / 3).max(1))
        .min();
    match best {
        Some((_, c)) => format!("did you mean `{c}`?"),
        None if candidates.is_empty() => fallback.to_owned(),
        None => {
            let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}
