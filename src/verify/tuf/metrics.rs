//! The state of trusted-root rotation as metrics (docs/operating.md lists them). The only
//! label values are the two TUF instances and `ok`/`error`: bounded by construction. The label
//! is `sigstore_instance`, not `instance`, which Prometheus sets to the scraped target.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{FetchedRoot, TufInstance};

impl EncodeLabelValue for TufInstance {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabel {
    pub sigstore_instance: TufInstance,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabel {
    pub sigstore_instance: TufInstance,
    pub result: &'static str,
}

/// Refresh counts and the TUF state of the trusted root in force, per instance.
#[derive(Clone)]
pub struct TufMetrics {
    refreshes: Family<RefreshLabel, Counter>,
    last_success: Family<InstanceLabel, Gauge>,
    from_tuf: Family<InstanceLabel, Gauge>,
    root_version: Family<InstanceLabel, Gauge>,
    root_expiry: Family<InstanceLabel, Gauge>,
}

impl TufMetrics {
    /// Registers the metrics with every refreshed instance at "embedded, never refreshed",
    /// so that a dashboard sees them before the first refresh ends.
    pub fn register(registry: &mut Registry, instances: &[TufInstance]) -> TufMetrics {
        let metrics = TufMetrics {
            refreshes: Family::default(),
            last_success: Family::default(),
            from_tuf: Family::default(),
            root_version: Family::default(),
            root_expiry: Family::default(),
        };
        registry.register(
            "provenance_gate_trusted_root_refreshes",
            "TUF refreshes of the trusted root, by instance and result (ok, error)",
            metrics.refreshes.clone(),
        );
        registry.register(
            "provenance_gate_trusted_root_refresh_last_success_timestamp_seconds",
            "When the instance's trusted root was last refreshed from TUF (Unix seconds; 0: never)",
            metrics.last_success.clone(),
        );
        registry.register(
            "provenance_gate_trusted_root_from_tuf",
            "1 when the instance's trusted root in force came from TUF, 0 when it is the embedded one",
            metrics.from_tuf.clone(),
        );
        registry.register(
            "provenance_gate_trusted_root_tuf_root_version",
            "Version of the TUF root.json the last successful refresh ended on (0: never refreshed)",
            metrics.root_version.clone(),
        );
        registry.register(
            "provenance_gate_trusted_root_tuf_root_expiry_timestamp_seconds",
            "When that TUF root.json expires (Unix seconds; 0: never refreshed)",
            metrics.root_expiry.clone(),
        );
        for &instance in instances {
            let label = InstanceLabel {
                sigstore_instance: instance,
            };
            metrics.last_success.get_or_create(&label).set(0);
            metrics.from_tuf.get_or_create(&label).set(0);
            metrics.root_version.get_or_create(&label).set(0);
            metrics.root_expiry.get_or_create(&label).set(0);
            for result in ["ok", "error"] {
                metrics
                    .refreshes
                    .get_or_create(&RefreshLabel {
                        sigstore_instance: instance,
                        result,
                    })
                    .inc_by(0);
            }
        }
        metrics
    }

    pub(super) fn succeeded(&self, fetched: &FetchedRoot, now: jiff::Timestamp) {
        let instance = fetched.instance;
        let label = InstanceLabel {
            sigstore_instance: instance,
        };
        self.refreshes
            .get_or_create(&RefreshLabel {
                sigstore_instance: instance,
                result: "ok",
            })
            .inc();
        self.last_success.get_or_create(&label).set(now.as_second());
        self.from_tuf.get_or_create(&label).set(1);
        self.root_version
            .get_or_create(&label)
            .set(i64::try_from(fetched.tuf_root_version).unwrap_or(i64::MAX));
        self.root_expiry
            .get_or_create(&label)
            .set(fetched.tuf_root_expires.as_second());
    }

    pub(super) fn failed(&self, instance: TufInstance) {
        self.refreshes
            .get_or_create(&RefreshLabel {
                sigstore_instance: instance,
                result: "error",
            })
            .inc();
    }

    /// `tuf` or `embedded`: where the root in force came from, for log lines.
    pub(super) fn source_of(&self, instance: TufInstance) -> &'static str {
        if self
            .from_tuf
            .get_or_create(&InstanceLabel {
                sigstore_instance: instance,
            })
            .get()
            == 1
        {
            "tuf"
        } else {
            "embedded"
        }
    }
}
