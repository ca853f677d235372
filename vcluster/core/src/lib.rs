//! `vcluster-core`: the object model of the tenant API server, with no IO.
//!
//! - [`registry`]: the one table of built-in resources that discovery, routing and storage
//!   keys are derived from. Start here.
//! - [`names`]: DNS labels and subdomains, the name rules of every kind.
//! - [`events`]: client-go's event correlation (repeats counted, a burst per speaker).
//! - [`object`]: what create and update do to an object's metadata.
//! - [`deletion`]: graceful deletion (how long a deleted pod lives on, marked).
//! - [`defaults`]: the fields kube-apiserver fills in for built-in kinds.
//! - [`selector`]: label and field selectors.
//! - [`patch`]: strategic merge patch for built-in types.
//! - [`jsonpatch`]: JSON patches, applied within kube-apiserver's operation and copy limits.
//! - [`status`]: API errors and their `metav1.Status` bodies.
//! - [`table`]: Tables (kubectl get's columns) and metadata-only views.
//! - [`serviceaccount`]: what the ServiceAccount admission plugin does to a pod.
//! - [`validation`]: the 422 rules of built-in kinds beyond names.
//! - [`protobuf`]: Kubernetes protobuf request bodies, transcoded to JSON.

pub mod apply;
pub mod crd;
pub mod defaults;
pub mod deletion;
pub mod events;
pub mod jsonpatch;
pub mod limitrange;
pub mod names;
pub mod object;
pub mod patch;
pub mod podsecurity;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod rbac;
pub mod registry;
pub mod scheduling;
pub mod selector;
pub mod serviceaccount;
pub mod status;
pub mod structural;
pub mod table;
pub mod validation;
