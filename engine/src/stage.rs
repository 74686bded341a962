//! The seam between the engine and the stage kinds: a [`Stage`] decodes its kind-specific settings into
//! canonical parameters (torch-free, so `check` and `plan` never load `LibTorch`) and says how its
//! process starts. The engine knows no kind by name; the registry maps names to implementations.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use yiflow_dsl::{KdlNode, NodeExt, Recipe, RecipeError, Sink, Spanned, StageDecl, did_you_mean};

/// How a stage kind's process starts. Every stage runs in a process of its own, so a crash, OOM or
/// CUDA fault never takes down the engine, and the Slurm executor can submit the same command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// `sh -c LINE` in the recipe's folder, with extra environment variables.
    Shell {
        line: String,
        env: Vec<(String, String)>,
    },
    /// `yiflow exec-stage`: a torch-free kind implemented in [`Stage::execute`].
    Internal,
    /// `yiflow-worker exec-stage`: a kind whose tensor work needs `LibTorch`.
    Worker,
}

/// Error type of [`Stage::execute`].
pub type ExecError = Box<dyn std::error::Error + Send + Sync>;

/// One stage kind.
pub trait Stage: Send + Sync + 'static {
    /// The name recipes use (`kind=NAME`).
    fn kind(&self) -> &'static str;

    /// One line on what the kind does, for `--help` and diagnostics.
    fn summary(&self) -> &'static str;

    /// Version of the implementation: bump it when the same parameters and inputs would now give a
    /// different artifact, so cached results of the old version are not reused.
    fn version(&self) -> u32;

    /// The kind-specific children the kind accepts (the shared ones are handled by the engine).
    fn children(&self) -> &'static [&'static str];

    /// Decodes the kind-specific children into canonical parameters (a JSON object with every default
    /// filled in, so that writing a default explicitly never changes the fingerprint). Problems go into
    /// `sink`; the returned value is then ignored.
    fn decode(&self, stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) -> Value;

    /// How the stage's process starts.
    fn launch(&self, params: &Value) -> Launch;

    /// Does the work of a [`Launch::Internal`] or [`Launch::Worker`] kind, inside the stage's process.
    fn execute(&self, params: &Value, io: &StageIo) -> Result<(), ExecError> {
        let _ = (params, io);
        Err(format!(
            "stage kind `{}` runs as a command, not in-process",
            self.kind()
        )
        .into())
    }
}

/// What a kind's decoder may look at besides its own node.
pub struct DecodeCx<'a> {
    pub recipe: &'a Recipe,
}

impl DecodeCx<'_> {
    /// The `model NAME` block a stage refers to; reports an unknown name with a suggestion.
    pub fn model(&self, name: &Spanned<String>, sink: &mut Sink) -> Option<&KdlNode> {
        if let Some(model) = self.recipe.model(&name.value) {
            return Some(&model.node);
        }
        sink.push(RecipeError::UnknownModel {
            name: name.value.clone(),
            span: name.span,
            help: did_you_mean(
                &name.value,
                self.recipe.models.iter().map(|m| m.name.value.as_str()),
                "declare it with `model NAME { ... }` at the top level of the recipe",
            ),
        });
        None
    }

    /// Reports body children the kind does not know.
    pub fn check_body(&self, stage: &StageDecl, allowed: &[&str], sink: &mut Sink) {
        let mut all: Vec<&str> = allowed.to_vec();
        all.extend_from_slice(StageDecl::COMMON);
        for child in &stage.body {
            if !allowed.contains(&child.node_name()) {
                sink.push(RecipeError::UnknownChild {
                    child: child.node_name().to_owned(),
                    context: format!("a `{}` stage", stage.kind.value),
                    span: child.name_span(),
                    help: did_you_mean(
                        child.node_name(),
                        all.iter().copied(),
                        "this kind takes no settings",
                    ),
                });
            }
        }
    }
}

/// Where a running stage finds its inputs and puts its outputs. The engine passes it to the stage's
/// process through environment variables (see [`StageIo::to_env`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageIo {
    pub stage: String,
    pub kind: String,
    /// Folder the stage writes its artifact into (empty at start).
    pub out: PathBuf,
    /// Upstream stage name -> its artifact folder (read-only).
    pub inputs: BTreeMap<String, PathBuf>,
    /// Folder kept across interrupted runs of the same fingerprint, for training checkpoints.
    pub checkpoints: PathBuf,
    /// Devices given to the stage (`cuda:N`), empty for CPU. The engine fills in physical indices;
    /// inside the stage's process (after [`StageIo::from_env`]) they are the logical `cuda:0..n`.
    pub devices: Vec<String>,
    /// The recipe's seed.
    pub seed: u64,
    /// The recipe's folder (the working directory).
    pub recipe_dir: PathBuf,
    /// File holding the stage's canonical parameters as JSON.
    pub params_file: PathBuf,
}

/// The variable that names an upstream artifact folder: `YIFLOW_IN_<name>`, non-alphanumerics as `_`.
pub fn input_var(stage: &str) -> String {
    let safe: String = stage
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("YIFLOW_IN_{safe}")
}

impl StageIo {
    /// The environment a stage's process gets.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let logical: Vec<String> = (0..self.devices.len())
            .map(|i| format!("cuda:{i}"))
            .collect();
        let mut env = vec![
            ("YIFLOW_STAGE".to_owned(), self.stage.clone()),
            ("YIFLOW_KIND".to_owned(), self.kind.clone()),
            ("YIFLOW_OUT".to_owned(), self.out.display().to_string()),
            (
                "YIFLOW_CHECKPOINTS".to_owned(),
                self.checkpoints.display().to_string(),
            ),
            // Inside the process the devices are renumbered from 0 by CUDA_VISIBLE_DEVICES.
            ("YIFLOW_DEVICES".to_owned(), logical.join(",")),
            ("YIFLOW_SEED".to_owned(), self.seed.to_string()),
            (
                "YIFLOW_RECIPE_DIR".to_owned(),
                self.recipe_dir.display().to_string(),
            ),
            (
                "YIFLOW_PARAMS".to_owned(),
                self.params_file.display().to_string(),
            ),
            (
                "YIFLOW_INPUTS".to_owned(),
                serde_json::to_string(&self.inputs).unwrap_or_default(),
            ),
        ];
        for (name, dir) in &self.inputs {
            env.push((input_var(name), dir.display().to_string()));
        }
        let cuda: Vec<&str> = self
            .devices
            .iter()
            .filter_map(|d| d.strip_prefix("cuda:"))
            .collect();
        env.push(("CUDA_VISIBLE_DEVICES".to_owned(), cuda.join(",")));
        env
    }

    /// Reads the environment set by [`StageIo::to_env`], inside a stage's process.
    pub fn from_env() -> Result<Self, ExecError> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| format!("{name} is not set: stages are started by `yiflow run`"))
        };
        let devices = var("YIFLOW_DEVICES")?;
        Ok(Self {
            stage: var("YIFLOW_STAGE")?,
            kind: var("YIFLOW_KIND")?,
            out: var("YIFLOW_OUT")?.into(),
            inputs: serde_json::from_str(&var("YIFLOW_INPUTS")?)?,
            checkpoints: var("YIFLOW_CHECKPOINTS")?.into(),
            devices: devices
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect(),
            seed: var("YIFLOW_SEED")?.parse()?,
            recipe_dir: var("YIFLOW_RECIPE_DIR")?.into(),
            params_file: var("YIFLOW_PARAMS")?.into(),
        })
    }

    /// The stage's parameters, read from [`StageIo::params_file`].
    pub fn params(&self) -> Result<Value, ExecError> {
        let text = std::fs::read_to_string(&self.params_file)
            .map_err(|e| format!("cannot read {}: {e}", self.params_file.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}
