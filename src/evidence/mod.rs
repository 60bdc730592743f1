//! What one admission leaves behind: decision records for the audit trail, Kubernetes
//! Events (sent through the `EventRecorder` edge in `cluster/`) and Prometheus metrics,
//! written through one handle ([`review::Evidence`]) once per review.
pub mod break_glass;
pub mod metrics;
pub mod records;
pub mod review;
