//! OCI concepts shared by every part of ferry: image references, digests, and OCI documents
//! (manifests, indexes and their media types).

pub mod digest;
pub mod document;
pub mod reference;
pub mod referrers;
