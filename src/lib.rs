//! provenance-gate: admit only images with verifiable GitHub Actions build provenance.
//!
//! `verify` turns a Sigstore bundle into facts about a build; `policy` decides over those
//! facts without I/O; `provenance` joins the two for one artifact; `cli` is the command line.
//! docs/architecture.md follows one admission through the modules.
pub mod admission;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod decision;
pub mod defaults;
pub mod evidence;
pub mod policy;
pub mod registry;
pub mod reload;
pub mod server;
pub mod verify;
