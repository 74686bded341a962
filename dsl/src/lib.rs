//! The yiflow recipe language: KDL 2.0 text in, a typed [`Recipe`] out, with every value keeping the
//! span it came from so that later steps (plan, stage kinds) can point at the node at fault.
//!
//! Three steps, each catching what it can see: [`Recipe::parse`] (KDL syntax and the shape of the
//! `recipe`, `model` and `stage` nodes), the stage kinds' own decoding (through [`NodeExt`]), and the
//! engine's compile step (inputs, cycles, globs). All of them report [`RecipeError`]s gathered into one
//! [`RecipeErrors`] so a user sees every mistake of a file at once.

mod error;
mod model_decl;
mod node_ext;
mod parse;
mod recipe;
mod recipe_source;
mod sink;
mod spanned;
mod stage_decl;
mod syntax;

pub use error::{RecipeError, RecipeErrors, did_you_mean};
pub use kdl::{KdlDocument, KdlEntry, KdlIdentifier, KdlNode, KdlValue};
pub use miette::{NamedSource, SourceSpan};
pub use model_decl::ModelDecl;
pub use node_ext::{FromValue, NodeExt, parse_count};
pub use recipe::{Devices, ExecutorDecl, Recipe, SlurmDecl};
pub use recipe_source::RecipeSource;
pub use sink::Sink;
pub use spanned::Spanned;
pub use stage_decl::StageDecl;
