//! A `model NAME { ... }` block, kept as its KDL node: the model configuration decoder (a stage-kinds
//! concern) reads it when a stage refers to the model.

use kdl::KdlNode;

use crate::Spanned;

/// A named model block.
#[derive(Debug, Clone)]
pub struct ModelDecl {
    pub name: Spanned<String>,
    pub node: KdlNode,
}
