//! The bundle file: its container format, manifest and spec, the image inputs it is built
//! from, and the commands that make, check, open and read it (build, verify, extract,
//! inspect, re-sign), and the pieces a release travels in (deltas, split parts).

pub mod archive;
pub mod build;
pub mod delta;
pub mod extract;
pub mod head;
pub mod inspect;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod partial;
pub mod safepath;
pub mod sbom;
pub mod source;
pub mod spec;
pub mod split;
pub mod verify;
