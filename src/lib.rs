//! provenance-gate: admit only images with verifiable GitHub Actions build provenance.
//!
//! One admission flows top-down through the folders: `server` (HTTPS, TLS, limits) →
//! `admission` (review in, response out) → `check` (the image pipeline) → `decision` (pure
//! verdicts) → `evidence` (records, metrics). Beneath them: `policy` (decides over facts
//! without I/O), `verify` (a Sigstore bundle into facts about a build), `registry`, `github`
//! and `cluster` (the outside world behind traits). `cli` is the command line; `audit` runs the
//! same check and decision over every running Pod; `report` summarises decision records after
//! the fact.
//! docs/architecture.md follows one admission through the modules.
pub mod admission;
pub mod audit;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod decision;
pub mod defaults;
pub mod evidence;
pub mod github;
pub mod policy;
pub mod registry;
pub mod reload;
pub mod report;
pub mod server;
pub mod verify;
