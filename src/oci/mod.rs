//! OCI concepts shared by every part of ferry: image references, digests, and image inputs
//! (OCI layouts and image archives).

pub mod digest;
pub mod reference;
pub mod source;
