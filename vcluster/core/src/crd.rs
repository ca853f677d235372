//! Custom resources: what a CustomResourceDefinition adds to a served type.

/// The parts of a CRD version that serving its objects needs beyond names and scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Custom {
    /// The version's `openAPIV3Schema` (structural), if it has one.
    pub schema: Option<serde_json::Value>,
}
