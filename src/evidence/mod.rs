//! What one admission leaves behind: decision records for the audit trail and Prometheus
//! metrics. Kubernetes Events stay in `cluster/`, behind the `EventRecorder` edge.
pub mod metrics;
pub mod records;
