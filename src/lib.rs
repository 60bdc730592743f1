//! provenance-gate: admit only images with verifiable GitHub Actions build provenance.
//!
//! `verify` turns a Sigstore bundle into facts about a build; `policy` decides over those
//! facts without I/O; `provenance` joins the two for one artifact; `cli` is the command line.
pub mod cli;
pub mod image;
pub mod policy;
pub mod provenance;
pub mod verify;
