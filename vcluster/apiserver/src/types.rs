//! The resource types a tenant serves: the built-ins, and the custom resources of its own
//! CRDs. Discovery, routing and OpenAPI all read one [`TypeSet`].

use std::sync::Arc;

use vcluster_core::registry::{self, BUILTINS, ResourceType};

/// The types one tenant serves at one moment.
#[derive(Debug, Default)]
pub(crate) struct TypeSet {
    /// The served versions of the tenant's established CRDs.
    pub(crate) custom: Vec<Arc<ResourceType>>,
    /// The revision of the tenant's CRDs this set was made from.
    pub(crate) revision: u64,
}

impl TypeSet {
    /// Every served type: the built-ins first, in discovery order, then the custom ones.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        BUILTINS.iter().chain(self.custom.iter())
    }

    pub(crate) fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// The groups served, each with its versions in preference order.
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
        registry::groups(self.all().map(|rt| &**rt))
    }

    /// The types of one group-version.
    pub(crate) fn resources<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceType>> {
        self.all()
            .filter(move |r| r.group == group && r.version == version)
    }
}
