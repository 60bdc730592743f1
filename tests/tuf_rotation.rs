//! Trusted-root rotation over TUF against a real TUF repository the test kit serves on
//! loopback (metadata written and signed by the kit, not by the client under test): the refreshed
//! trusted root is used for verification, a root rotation is picked up by the background
//! refresh, and tampered targets, expired timestamps and rollbacks are refused with the
//! roots in force kept. Sigstore's and GitHub's own mirrors cannot be reached from tests.

use std::sync::Arc;
use std::time::Duration;

use provenance_gate::verify::tuf::{
    keep_refreshed, refresh_once, LiveTrustedRoots, RootUpdater, TufInstance, TufMetrics,
    TufMirror, TufTimeouts,
};
use provenance_gate::verify::{read_bundles, verify_bundle, ArtifactInput, Instance};
use provenance_gate_testkit::tuf::TufRepository;
use provenance_gate_testkit::{MintSpec, TestInstance};

const DIGEST: &str = "9c24ac7eca13411bee8f335f96442c0b5ef8de65ff1f85da6f16fcb0c046bd78";

/// The webhook's side: embedded roots, one TUF client for the `github` instance aimed at
/// the test repository, and the metrics.
struct Client {
    live: Arc<LiveTrustedRoots>,
    updater: Option<RootUpdater>,
    metrics: TufMetrics,
    registry: prometheus_client::registry::Registry,
}

impl Client {
    fn for_repository(repository: &TufRepository) -> Client {
        Self::for_mirror(TufMirror {
            instance: TufInstance::Github,
            url: repository.url().parse().unwrap(),
            tuf_root: repository.initial_root(),
        })
    }

    fn for_mirror(mirror: TufMirror) -> Client {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = TufMetrics::register(&mut registry, &[mirror.instance]);
        let timeouts = TufTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
            refresh: Duration::from_secs(10),
        };
        Client {
            live: Arc::new(LiveTrustedRoots::embedded().unwrap()),
            updater: Some(RootUpdater::new(&mirror, timeouts).unwrap()),
            metrics,
            registry,
        }
    }

    async fn refresh(&mut self) -> Result<u64, String> {
        let updater = self.updater.as_mut().unwrap();
        refresh_once(updater, &self.live, &self.metrics)
            .await
            .map(|fetched| fetched.tuf_root_version)
            .map_err(|error| error.to_string())
    }

    /// Which root accepted a bundle `instance` minted, if any.
    fn verifies(&self, instance: &TestInstance) -> Option<Instance> {
        let bundle = instance.mint(&MintSpec::github_build(DIGEST));
        let bundles = read_bundles(bundle.as_bytes()).unwrap();
        let digest = ArtifactInput::parse_sha256(&format!("sha256:{DIGEST}")).unwrap();
        verify_bundle(&self.live.current(), &bundles[0], digest)
            .ok()
            .map(|attestation| attestation.instance)
    }

    fn failed_refreshes(&self) -> String {
        self.metric(
            "provenance_gate_trusted_root_refreshes_total{sigstore_instance=\"github\",result=\"error\"}",
        )
    }

    fn metric(&self, name: &str) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find(|line| line.starts_with(name) && line.contains("sigstore_instance=\"github\""))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    }
}

/// Two private instances, a TUF repository publishing the first one's trusted root, and a
/// client of that repository.
struct Scenario {
    first: TestInstance,
    second: TestInstance,
    repository: TufRepository,
    client: Client,
}

impl Scenario {
    async fn new() -> Scenario {
        let first = TestInstance::timestamp_only();
        let repository = TufRepository::new(&first.trusted_root_json()).await;
        let client = Client::for_repository(&repository);
        Scenario {
            first,
            second: TestInstance::timestamp_only(),
            repository,
            client,
        }
    }

    /// After one successful refresh: the first instance's root is in force.
    async fn refreshed() -> Scenario {
        let mut scenario = Scenario::new().await;
        scenario.client.refresh().await.unwrap();
        scenario
    }
}

#[tokio::test]
async fn a_refreshed_trusted_root_is_verified_by_tuf_and_put_in_force() {
    let Scenario {
        first,
        mut client,
        repository: _served,
        ..
    } = Scenario::new().await;
    assert_eq!(
        client.verifies(&first),
        None,
        "not trusted before the refresh"
    );
    assert_eq!(client.metric("provenance_gate_trusted_root_from_tuf"), "0");

    assert_eq!(client.refresh().await, Ok(1));

    assert_eq!(client.verifies(&first), Some(Instance::Github));
    assert_eq!(client.metric("provenance_gate_trusted_root_from_tuf"), "1");
    assert_eq!(
        client.metric("provenance_gate_trusted_root_tuf_root_version"),
        "1"
    );
    let expiry: i64 = client
        .metric("provenance_gate_trusted_root_tuf_root_expiry_timestamp_seconds")
        .parse()
        .unwrap();
    assert!(expiry > jiff::Timestamp::now().as_second());
    assert_ne!(
        client.metric("provenance_gate_trusted_root_refresh_last_success_timestamp_seconds"),
        "0"
    );
}

#[tokio::test]
async fn a_rotated_root_and_new_target_are_picked_up_by_the_background_refresh() {
    let Scenario {
        first,
        second,
        mut repository,
        mut client,
    } = Scenario::new().await;
    let task = tokio::spawn(keep_refreshed(
        client.updater.take().unwrap(),
        Arc::clone(&client.live),
        client.metrics.clone(),
        Duration::from_millis(100),
    ));
    let version = "provenance_gate_trusted_root_tuf_root_version";
    wait_for(&client, version, "1").await;
    assert_eq!(client.verifies(&first), Some(Instance::Github));

    repository.rotate_root(&second.trusted_root_json()).await;
    assert_eq!(repository.root_version(), 2);
    wait_for(&client, version, "2").await;
    task.abort();

    assert_eq!(client.verifies(&second), Some(Instance::Github));
    assert_eq!(
        client.verifies(&first),
        None,
        "the rotated-out root is gone"
    );
    assert_eq!(client.failed_refreshes(), "0");
}

#[tokio::test]
async fn a_tampered_target_is_refused_and_the_roots_in_force_stay() {
    let mut scenario = Scenario::refreshed().await;
    let second_root = scenario.second.trusted_root_json();
    scenario.repository.publish(&second_root).await;
    scenario.repository.tamper_target();

    let error = scenario.client.refresh().await.unwrap_err();

    assert!(
        error.contains("of github") && error.contains("mismatch"),
        "{error}"
    );
    assert_refused_and_kept(&scenario);
}

#[tokio::test]
async fn an_expired_timestamp_is_refused_and_the_roots_in_force_stay() {
    let mut scenario = Scenario::refreshed().await;
    let second_root = scenario.second.trusted_root_json();
    scenario.repository.publish_expired(&second_root).await;

    let error = scenario.client.refresh().await.unwrap_err();

    assert!(error.contains("expired"), "{error}");
    assert_refused_and_kept(&scenario);
}

#[tokio::test]
async fn a_rollback_to_older_metadata_is_refused_and_the_newer_root_stays() {
    let mut scenario = Scenario::new().await;
    let old_metadata = scenario.repository.save_metadata();
    let second_root = scenario.second.trusted_root_json();
    scenario.repository.publish(&second_root).await;
    scenario.client.refresh().await.unwrap();
    let second_in_force = |scenario: &Scenario| {
        scenario.client.verifies(&scenario.second) == Some(Instance::Github)
            && scenario.client.verifies(&scenario.first).is_none()
    };
    assert!(second_in_force(&scenario));

    scenario.repository.replay(&old_metadata);
    let error = scenario.client.refresh().await.unwrap_err();

    assert!(error.contains("rollback"), "{error}");
    assert!(
        second_in_force(&scenario),
        "the rolled-back root was not put in force"
    );
}

#[tokio::test]
async fn an_unreachable_mirror_leaves_the_embedded_roots_in_force_and_says_so() {
    // A port nothing listens on: the offline case, as without access to the public mirrors.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let mut client = Client::for_mirror(TufMirror {
        url: url.parse().unwrap(),
        ..TufMirror::published(TufInstance::Github)
    });
    let before = client.live.current();

    let error = client.refresh().await.unwrap_err();

    assert!(error.contains(&url), "{error}");
    assert!(Arc::ptr_eq(&before, &client.live.current()));
    assert_eq!(client.metric("provenance_gate_trusted_root_from_tuf"), "0");
    assert_eq!(client.failed_refreshes(), "1");
    assert_eq!(
        client.metric("provenance_gate_trusted_root_tuf_root_version"),
        "0"
    );
}

/// The refresh failed: counted, and the root from the last good refresh still verifies.
fn assert_refused_and_kept(scenario: &Scenario) {
    let client = &scenario.client;
    assert_eq!(client.verifies(&scenario.first), Some(Instance::Github));
    assert_eq!(client.verifies(&scenario.second), None);
    assert_eq!(client.failed_refreshes(), "1");
    assert_eq!(client.metric("provenance_gate_trusted_root_from_tuf"), "1");
}

/// Waits (at most 20 s) until the metric has the value.
async fn wait_for(client: &Client, name: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client.metric(name) != value {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed {} instead of {value}",
            client.metric(name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_mirror_that_never_answers_is_given_up_on_at_the_request_timeout() {
    // Connections are queued by the kernel and never answered: a stalled mirror.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let mut client = Client::for_mirror(TufMirror {
        url: url.parse().unwrap(),
        ..TufMirror::published(TufInstance::Github)
    });

    let refresh = tokio::time::timeout(Duration::from_secs(30), client.refresh()).await;

    let error = refresh
        .expect("the refresh ends by its own deadlines")
        .unwrap_err();
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(client.failed_refreshes(), "1");
    drop(silent);
}
