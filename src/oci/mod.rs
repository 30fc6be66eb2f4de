//! OCI concepts shared by every part of ferry: image references, digests, OCI documents
//! (manifests, indexes and their media types), and image inputs (OCI layouts and image
//! archives).

pub mod digest;
pub mod document;
pub mod reference;
pub mod source;
