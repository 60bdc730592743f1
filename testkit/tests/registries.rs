//! The registry test infrastructure works against the real registries:
//! every variant starts, pushes and pulls round-trip, attestations are
//! discoverable the way each registry offers them, and the proxy counts
//! and injects what it is asked to.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use provenance_gate_testkit::registry::{
    push_attested_image, push_multi_arch_index, push_oversized_manifest,
    push_referrer_with_corrupt_layer, push_unattested_image, sha256_digest, AttestPlatforms,
    ConnectionRecorder, DistributionRegistry, Fault, FaultProxy, FerroRegistry, IndexAttestations,
    LayerCorruption, Platform, PushedImage, RegistryClient, TestRegistry, TokenAccess, OCI_INDEX,
    OCI_MANIFEST, SIGSTORE_BUNDLE_ARTIFACT_TYPE,
};
use provenance_gate_testkit::TestInstance;
use serde_json::Value;

/// Pulls `image` back by tag and checks bytes, digest and bundle.
fn assert_round_trip(client: &RegistryClient, image: &PushedImage) {
    let tag = image.tag.as_deref().expect("pushed under a tag");
    let manifest = client.get_manifest(&image.repository, tag);
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    assert_eq!(manifest.body, image.manifest_bytes);
    assert_eq!(sha256_digest(&manifest.body), image.manifest_digest);
    assert_eq!(manifest.header("content-type"), Some(OCI_MANIFEST));
    let config_digest = manifest.json()["config"]["digest"]
        .as_str()
        .expect("a config digest")
        .to_owned();
    let config = client.get_blob(&image.repository, &config_digest);
    assert_eq!(config.status, 200);
    assert_eq!(sha256_digest(&config.body), config_digest);

    if let Some(attestation) = &image.attestation {
        let referrer = client.get_manifest(&image.repository, &attestation.referrer.digest);
        assert_eq!(referrer.status, 200, "{}", referrer.text());
        assert_eq!(referrer.body, attestation.referrer_manifest);
        let referrer = referrer.json();
        assert_eq!(referrer["artifactType"], SIGSTORE_BUNDLE_ARTIFACT_TYPE);
        assert_eq!(
            referrer["subject"]["digest"],
            image.manifest_digest.as_str()
        );
        assert_eq!(
            referrer["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(
            referrer["annotations"]["dev.sigstore.bundle.content"],
            "dsse-envelope"
        );
        let bundle = client.get_blob(&image.repository, &attestation.bundle.digest);
        assert_eq!(bundle.status, 200);
        assert_eq!(bundle.body, attestation.bundle_json.as_bytes());
    }
}

/// The digests listed by the index under the referrers tag of `subject`.
fn tag_schema_referrers(client: &RegistryClient, repository: &str, subject: &str) -> Vec<Value> {
    let tag = format!("sha256-{}", subject.trim_start_matches("sha256:"));
    let index = client.get_manifest(repository, &tag);
    assert_eq!(
        index.status,
        200,
        "no referrers tag {tag}: {}",
        index.text()
    );
    assert_eq!(index.header("content-type"), Some(OCI_INDEX));
    index.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn api_referrers(client: &RegistryClient, repository: &str, subject: &str) -> Vec<Value> {
    let response = client.get_referrers(repository, subject);
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn plain_distribution_round_trips_and_lists_the_attestation_in_the_tag_schema() {
    let registry = DistributionRegistry::plain();
    let client = registry.client();
    let instance = TestInstance::timestamp_only();
    let image = push_attested_image(&client, "acme/api", "v1", &instance, |spec| spec);
    assert_eq!(image.reference, format!("{}/acme/api:v1", registry.host()));
    assert_round_trip(&client, &image);

    let attestation = image.attestation();
    assert_eq!(
        attestation.referrers_tag.as_deref(),
        Some(format!("sha256-{}", image.manifest.hex()).as_str()),
        "distribution 2.8 has no referrers API, so the tag schema is maintained"
    );
    let listed = tag_schema_referrers(&client, "acme/api", &image.manifest_digest);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["digest"], image.referrer_digest());
    assert_eq!(listed[0]["artifactType"], SIGSTORE_BUNDLE_ARTIFACT_TYPE);
    assert_eq!(listed[0]["mediaType"], OCI_MANIFEST);

    // A second attestation for the same image merges into the same index.
    let second = provenance_gate_testkit::registry::attach_attestation(
        &client,
        "acme/api",
        &image.manifest,
        &attestation.bundle_json,
        provenance_gate_testkit::registry::ReferrersTagSchema::Auto,
    );
    let listed = tag_schema_referrers(&client, "acme/api", &image.manifest_digest);
    let digests: Vec<&str> = listed
        .iter()
        .filter_map(|entry| entry["digest"].as_str())
        .collect();
    assert_eq!(digests.len(), 2, "{digests:?}");
    assert!(digests.contains(&second.referrer.digest.as_str()));

    // No referrers API: distribution 2.8 answers 404 to it.
    assert_eq!(
        client
            .get_referrers("acme/api", &image.manifest_digest)
            .status,
        404
    );
    // Without the OCI Accept types, distribution 2.8 does not serve an OCI
    // manifest by tag (what the webhook's client must send).
    let bare = client.request("GET", "/v2/acme/api/manifests/v1", &[], &[]);
    assert_eq!(bare.status, 404, "{}", bare.text());
}

#[test]
fn tls_distribution_with_basic_auth_refuses_wrong_and_missing_credentials() {
    let registry = DistributionRegistry::tls_with_basic_auth();
    assert!(registry.base_url().starts_with("https://127.0.0.1:"));
    assert!(registry
        .ca_pem()
        .expect("a TLS registry has a CA")
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let client = registry.client();
    let image = push_unattested_image(&client, "acme/api", "v1");
    assert_round_trip(&client, &image);

    let anonymous = registry.anonymous_client().get_manifest("acme/api", "v1");
    assert_eq!(anonymous.status, 401);
    assert!(anonymous
        .header("www-authenticate")
        .expect("a challenge")
        .starts_with("Basic realm="));

    let credentials = registry.credentials().expect("Basic auth has a user");
    let wrong = credentials.with_wrong_password();
    let refused = registry
        .anonymous_client()
        .with_credentials(&wrong.username, &wrong.password)
        .get_manifest("acme/api", "v1");
    assert_eq!(refused.status, 401);

    let config = credentials.docker_config_json(&registry.host());
    let config: Value = serde_json::from_str(&config).expect("JSON");
    assert_eq!(
        config["auths"][registry.host()]["username"],
        credentials.username.as_str()
    );
}

#[test]
fn tls_distribution_with_token_auth_allows_anonymous_pull_and_authenticated_push() {
    let registry = DistributionRegistry::tls_with_token_auth(TokenAccess::AnonymousPull);
    let instance = TestInstance::timestamp_only();
    let image = push_attested_image(&registry.client(), "acme/api", "v1", &instance, |spec| spec);

    let token_server = registry
        .token_server()
        .expect("token auth runs a token server");
    // distribution asks for "pull,push" or "push,pull" (a Go map order).
    let pushes = token_server.requests();
    assert!(
        pushes.iter().any(|request| request.granted
            && request.username.as_deref() == Some("testkit-pusher")
            && request.scopes.iter().any(|scope| {
                scope == "repository:acme/api:pull,push" || scope == "repository:acme/api:push,pull"
            })),
        "{pushes:?}"
    );

    // Anonymous pull: a token for pull only, no credentials.
    let anonymous = registry.anonymous_client();
    assert_round_trip(&anonymous, &image);
    let listed = tag_schema_referrers(&anonymous, "acme/api", &image.manifest_digest);
    assert_eq!(listed[0]["digest"], image.referrer_digest());
    let anonymous_requests: Vec<_> = token_server
        .requests()
        .into_iter()
        .filter(|request| request.username.is_none())
        .collect();
    assert!(!anonymous_requests.is_empty() && anonymous_requests.iter().all(|r| r.granted));

    // ... but no anonymous push: the pull-only token does not allow it.
    let upload = anonymous.request("POST", "/v2/acme/api/blobs/uploads/", &[], &[]);
    assert_eq!(upload.status, 401, "{}", upload.text());

    // The challenge names the realm, the service and the scope.
    let challenge = registry.anonymous_client().request_without_auth(
        "GET",
        "/v2/acme/api/manifests/v1",
        &[],
        &[],
    );
    assert_eq!(challenge.status, 401);
    let header = challenge.header("www-authenticate").expect("a challenge");
    assert!(
        header.starts_with("Bearer realm=\"https://127.0.0.1:"),
        "{header}"
    );
    assert!(
        header.contains("scope=\"repository:acme/api:pull\""),
        "{header}"
    );
    assert!(
        header.contains(&format!("service=\"{}\"", token_server.service())),
        "{header}"
    );

    // Through a plain-HTTP fault proxy the challenge still leads to the
    // HTTPS realm, and the proxy sees only the registry's requests.
    let proxy = FaultProxy::start(&registry);
    let through_proxy = registry.anonymous_client().with_base_url(&proxy.base_url());
    assert_eq!(through_proxy.get_manifest("acme/api", "v1").status, 200);
    let seen: Vec<(String, String, bool)> = proxy
        .recorded_requests()
        .into_iter()
        .map(|request| (request.method, request.path, request.authorized))
        .collect();
    let manifest = "/v2/acme/api/manifests/v1".to_owned();
    assert_eq!(
        seen,
        vec![
            ("GET".to_owned(), manifest.clone(), false),
            ("GET".to_owned(), manifest, true),
        ],
        "one challenged request, then one with the token"
    );
}

#[test]
fn tls_distribution_with_token_auth_can_require_credentials_at_the_realm() {
    let registry = DistributionRegistry::tls_with_token_auth(TokenAccess::CredentialsRequired);
    let client = registry.client();
    let image = push_unattested_image(&client, "acme/private", "v1");
    assert_round_trip(&client, &image);

    let anonymous = registry
        .anonymous_client()
        .get_manifest("acme/private", "v1");
    assert_eq!(anonymous.status, 401);
    let credentials = registry
        .credentials()
        .expect("a user")
        .with_wrong_password();
    let wrong = registry
        .anonymous_client()
        .with_credentials(&credentials.username, &credentials.password)
        .get_manifest("acme/private", "v1");
    assert_eq!(wrong.status, 401);
    let refused = registry
        .token_server()
        .expect("a token server")
        .requests()
        .iter()
        .filter(|request| !request.granted)
        .count();
    assert_eq!(
        refused, 2,
        "the anonymous and the wrong-password token requests"
    );
}

#[test]
fn ferro_round_trips_and_lists_the_attestation_in_its_referrers_api() {
    let registry = FerroRegistry::start();
    let client = registry.client();
    let instance = TestInstance::timestamp_only();
    let image = push_attested_image(&client, "acme/api", "v1", &instance, |spec| spec);
    assert_round_trip(&client, &image);

    assert_eq!(
        image.attestation().referrers_tag,
        None,
        "ferro acknowledges the subject (OCI-Subject), so no tag schema"
    );
    let listed = api_referrers(&client, "acme/api", &image.manifest_digest);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["digest"], image.referrer_digest());
    assert_eq!(listed[0]["artifactType"], SIGSTORE_BUNDLE_ARTIFACT_TYPE);
    assert_eq!(
        listed[0]["annotations"]["dev.sigstore.bundle.predicateType"],
        "https://slsa.dev/provenance/v1"
    );

    // The artifactType filter, percent-encoded as the spec asks.
    let filtered = client.request(
        "GET",
        &format!(
            "/v2/acme/api/referrers/{}?artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson",
            image.manifest_digest
        ),
        &[],
        &[],
    );
    assert_eq!(filtered.status, 200);
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(
        filtered.json()["manifests"].as_array().map(Vec::len),
        Some(1)
    );
    let other = client.request(
        "GET",
        &format!(
            "/v2/acme/api/referrers/{}?artifactType=text%2Fplain",
            image.manifest_digest
        ),
        &[],
        &[],
    );
    assert_eq!(other.json()["manifests"].as_array().map(Vec::len), Some(0));

    let unattested = push_unattested_image(&client, "acme/api", "v2");
    assert!(api_referrers(&client, "acme/api", &unattested.manifest_digest).is_empty());
}

#[test]
fn multi_arch_indexes_get_attestations_where_asked_on_both_registries() {
    let instance = TestInstance::timestamp_only();
    let platforms = [Platform::linux_amd64(), Platform::linux_arm64()];
    let distribution = DistributionRegistry::plain();
    let ferro = FerroRegistry::start();
    for registry in [&distribution as &dyn TestRegistry, &ferro] {
        let client = registry.client();
        let index = push_multi_arch_index(
            &client,
            "acme/multi",
            "v1",
            &platforms,
            &instance,
            IndexAttestations {
                index: false,
                platforms: AttestPlatforms::AllExcept(1),
            },
            |spec| spec,
        );
        let fetched = client.get_manifest("acme/multi", "v1");
        assert_eq!(fetched.status, 200, "{}", fetched.text());
        assert_eq!(fetched.body, index.index_bytes);
        assert_eq!(fetched.header("content-type"), Some(OCI_INDEX));
        let entries = fetched.json()["manifests"]
            .as_array()
            .cloned()
            .expect("entries");
        assert_eq!(entries[1]["platform"]["architecture"], "arm64");
        assert_eq!(entries[1]["platform"]["variant"], "v8");
        assert!(index.attestation.is_none());
        assert!(index.platforms[0].1.attestation.is_some());
        assert!(index.platforms[1].1.attestation.is_none());
        let amd64 = &index.platforms[0].1;
        let listed = if registry.has_referrers_api() {
            api_referrers(&client, "acme/multi", &amd64.manifest_digest)
        } else {
            tag_schema_referrers(&client, "acme/multi", &amd64.manifest_digest)
        };
        assert_eq!(listed[0]["digest"], amd64.referrer_digest());

        let attested = push_multi_arch_index(
            &client,
            "acme/multi",
            "v2",
            &platforms,
            &instance,
            IndexAttestations {
                index: true,
                platforms: AttestPlatforms::None,
            },
            |spec| spec,
        );
        let attestation = attested
            .attestation
            .as_ref()
            .expect("the index is attested");
        assert_eq!(attestation.subject.media_type, OCI_INDEX);
        assert_eq!(attestation.subject.digest, attested.index_digest);
    }
}

#[test]
fn corrupt_layers_are_served_as_described_on_both_registries() {
    let instance = TestInstance::timestamp_only();
    let distribution = DistributionRegistry::plain();
    let ferro = FerroRegistry::start();
    for registry in [&distribution as &dyn TestRegistry, &ferro] {
        let client = registry.client();
        for corruption in [
            LayerCorruption::SizeMismatch,
            LayerCorruption::SubstitutedAtRest,
            LayerCorruption::BitFlipAtRest,
        ] {
            let image = push_referrer_with_corrupt_layer(
                registry,
                "acme/api",
                "corrupt",
                &instance,
                corruption,
                |spec| spec,
            );
            let attestation = image.attestation();
            let served = client.get_blob("acme/api", &attestation.bundle.digest);
            assert_eq!(served.status, 200, "{corruption:?}: {}", served.text());
            match corruption {
                LayerCorruption::SizeMismatch => {
                    assert_eq!(sha256_digest(&served.body), attestation.bundle.digest);
                    assert_eq!(served.body.len() as u64 + 1, attestation.bundle.size);
                }
                LayerCorruption::SubstitutedAtRest => {
                    assert_ne!(sha256_digest(&served.body), attestation.bundle.digest);
                    assert_eq!(served.body.len() as u64, attestation.bundle.size);
                    let substitute: Value =
                        serde_json::from_slice(&served.body).expect("a valid bundle");
                    assert!(substitute["dsseEnvelope"].is_object());
                }
                LayerCorruption::BitFlipAtRest => {
                    assert_ne!(sha256_digest(&served.body), attestation.bundle.digest);
                    assert_eq!(served.body.len() as u64, attestation.bundle.size);
                }
            }
            let listed = if registry.has_referrers_api() {
                api_referrers(&client, "acme/api", &image.manifest_digest)
            } else {
                tag_schema_referrers(&client, "acme/api", &image.manifest_digest)
            };
            assert_eq!(listed[0]["digest"], image.referrer_digest());
        }
    }
}

#[test]
fn oversized_manifests_up_to_each_registrys_limit_are_served() {
    const FOUR_MIB: usize = 4 * 1024 * 1024;
    let distribution = DistributionRegistry::plain();
    let client = distribution.client();
    let image = push_oversized_manifest(&client, "acme/big", "v1", FOUR_MIB)
        .expect("distribution 2.8 takes a 4 MiB manifest");
    let fetched = client.get_manifest("acme/big", "v1");
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    assert_eq!(fetched.body.len(), FOUR_MIB);
    assert_eq!(sha256_digest(&fetched.body), image.manifest_digest);
    let refused = push_oversized_manifest(&client, "acme/big", "v2", FOUR_MIB + 1)
        .expect_err("distribution 2.8 refuses a manifest over 4 MiB");
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("request body too large"),
        "{}",
        refused.text()
    );

    let ferro = FerroRegistry::start();
    let client = ferro.client();
    let image = push_oversized_manifest(&client, "acme/big", "v1", 5 * 1024 * 1024)
        .expect("ferro takes a 5 MiB manifest");
    let fetched = client.get_manifest("acme/big", "v1");
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    assert_eq!(fetched.body, image.manifest_bytes);
}

#[test]
fn fault_proxy_forwards_counts_and_keeps_connections_alive() {
    let registry = DistributionRegistry::plain();
    let image = push_unattested_image(&registry.client(), "acme/api", "v1");
    let proxy = FaultProxy::start(&registry);
    let client = RegistryClient::new(&proxy.base_url());
    for _ in 0..3 {
        assert_eq!(client.get_manifest("acme/api", "v1").status, 200);
    }
    assert_eq!(
        client
            .request(
                "HEAD",
                &format!("/v2/acme/api/manifests/{}", image.manifest_digest),
                &[("Accept", OCI_MANIFEST)],
                &[]
            )
            .status,
        200
    );
    assert_eq!(proxy.count("GET", "/v2/acme/api/manifests/v1"), 3);
    assert_eq!(proxy.count("HEAD", "/v2/acme/api/manifests/"), 1);
    assert_eq!(proxy.request_count(), 4);
    assert_eq!(
        proxy.requests()[0],
        ("GET".to_owned(), "/v2/acme/api/manifests/v1".to_owned())
    );
    assert_eq!(proxy.connection_count(), 1, "one kept-alive connection");

    // Pushing through the proxy works too (upload Locations are rewritten).
    let pushed = push_unattested_image(&client, "acme/api", "via-proxy");
    assert_round_trip(&registry.client(), &pushed);
    proxy.clear_requests();
    assert_eq!(proxy.request_count(), 0);
}

#[test]
fn fault_proxy_injects_each_fault() {
    let registry = DistributionRegistry::plain();
    let instance = TestInstance::timestamp_only();
    let image = push_attested_image(&registry.client(), "acme/api", "v1", &instance, |spec| spec);
    let proxy = FaultProxy::start(&registry);
    let client = RegistryClient::new(&proxy.base_url());
    let manifests = "/v2/acme/api/manifests/";

    proxy.inject(manifests, Fault::Unauthorized);
    let response = client.get_manifest("acme/api", "v1");
    assert_eq!(response.status, 401);
    assert!(response
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Basic")));
    proxy.clear_faults();

    proxy.inject(manifests, Fault::NotFound);
    let response = client.get_manifest("acme/api", "v1");
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    proxy.clear_faults();

    proxy.inject_times(
        manifests,
        Fault::TooManyRequests {
            retry_after_seconds: 2,
        },
        1,
    );
    let response = client.get_manifest("acme/api", "v1");
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("2"));
    assert_eq!(
        client.get_manifest("acme/api", "v1").status,
        200,
        "only once"
    );

    proxy.inject_everywhere(Fault::InternalServerError);
    assert_eq!(client.get_manifest("acme/api", "v1").status, 500);
    assert_eq!(client.ping().status, 500);
    proxy.clear_faults();

    let blob = format!("/v2/acme/api/blobs/{}", image.bundle_digest());
    proxy.inject(&blob, Fault::CorruptBody);
    let corrupted = client.get_blob("acme/api", image.bundle_digest());
    assert_eq!(corrupted.status, 200);
    assert_eq!(corrupted.body.len(), image.attestation().bundle_json.len());
    assert_ne!(sha256_digest(&corrupted.body), image.bundle_digest());
    proxy.clear_faults();
    proxy.inject(&blob, Fault::ReplaceBody(b"{}".to_vec()));
    assert_eq!(
        client.get_blob("acme/api", image.bundle_digest()).body,
        b"{}"
    );
    proxy.clear_faults();

    // A stalled request gets no answer at all: a raw socket with a short
    // read timeout sees the timeout, not a response.
    proxy.inject(manifests, Fault::Stall);
    let started = Instant::now();
    let mut socket = TcpStream::connect(proxy.host()).expect("the proxy listens");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("a read timeout");
    write!(
        socket,
        "GET /v2/acme/api/manifests/v1 HTTP/1.1\r\nHost: {}\r\n\r\n",
        proxy.host()
    )
    .expect("the request is sent");
    let mut buffer = [0u8; 64];
    let error = socket.read(&mut buffer).expect_err("no byte ever arrives");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{error}"
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(proxy.stalled_count(), 1);
    proxy.clear_faults();

    // Stalling mid-body: the head and half the body arrive, then nothing.
    proxy.inject(&blob, Fault::StallMidBody);
    let mut socket = TcpStream::connect(proxy.host()).expect("the proxy listens");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("a read timeout");
    write!(
        socket,
        "GET {blob} HTTP/1.1\r\nHost: {}\r\n\r\n",
        proxy.host()
    )
    .expect("sent");
    let mut received = Vec::new();
    let error = loop {
        match socket.read(&mut buffer) {
            Ok(0) => panic!("the proxy closed instead of stalling"),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) => break error,
        }
    };
    assert!(matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let faults: Vec<_> = proxy
        .recorded_requests()
        .into_iter()
        .filter_map(|r| r.fault)
        .collect();
    assert!(faults.contains(&Fault::StallMidBody) && faults.contains(&Fault::Stall));
    // Dropping the proxy ends the stalled connections (not waiting on them).
    let dropped = Instant::now();
    drop(proxy);
    assert!(dropped.elapsed() < Duration::from_secs(2));
}

#[test]
fn fault_proxy_serves_a_hundred_concurrent_requests() {
    let registry = FerroRegistry::start();
    let image = push_unattested_image(&registry.client(), "acme/api", "v1");
    let proxy = FaultProxy::start(&registry);
    let base_url = proxy.base_url();
    let digest = image.manifest_digest.clone();
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let base_url = base_url.clone();
            let digest = digest.clone();
            std::thread::spawn(move || {
                // One client (one connection) per thread: 100 at once.
                let response = RegistryClient::new(&base_url).get_manifest("acme/api", &digest);
                assert_eq!(response.status, 200);
                assert_eq!(sha256_digest(&response.body), digest);
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("every request succeeds");
    }
    assert_eq!(
        proxy.count("GET", &format!("/v2/acme/api/manifests/{digest}")),
        100
    );
    assert_eq!(proxy.request_count(), 100);
    assert_eq!(proxy.connection_count(), 100);
}

#[test]
fn tls_fault_proxy_puts_https_in_front_of_ferro() {
    let registry = FerroRegistry::start();
    let proxy = FaultProxy::start_tls(&registry);
    assert!(proxy.base_url().starts_with("https://"));
    let client = RegistryClient::new(&proxy.base_url())
        .with_ca_pem(&proxy.ca_pem().expect("a TLS proxy has a CA"));
    let instance = TestInstance::timestamp_only();
    let image = push_attested_image(&client, "acme/api", "v1", &instance, |spec| spec);
    assert_eq!(image.reference, format!("{}/acme/api:v1", proxy.host()));
    assert_round_trip(&client, &image);
    let listed = api_referrers(&client, "acme/api", &image.manifest_digest);
    assert_eq!(listed[0]["digest"], image.referrer_digest());
}

#[test]
fn connection_recorder_counts_attempts() {
    let recorder = ConnectionRecorder::start();
    assert_eq!(recorder.connection_count(), 0);
    for _ in 0..3 {
        let _ = TcpStream::connect(recorder.host()).expect("the recorder listens");
    }
    // The accept thread counts asynchronously.
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorder.connection_count() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(recorder.connection_count(), 3);
    assert!(recorder.base_url().starts_with("http://127.0.0.1:"));
}

#[test]
fn registries_stop_when_dropped() {
    let registry = DistributionRegistry::plain();
    let address = registry.host();
    drop(registry);
    assert!(
        TcpStream::connect(&address).is_err(),
        "distribution still listens"
    );
    let ferro = FerroRegistry::start();
    let address = ferro.host();
    drop(ferro);
    assert!(TcpStream::connect(&address).is_err(), "ferro still listens");
}

/// `sigstore-verify`, configured for GitHub's instance (no log, no SCT).
fn verifies_for(instance: &TestInstance, bundle: &[u8], digest: &str) -> bool {
    use sigstore_verify::trust_root::TrustedRoot;
    use sigstore_verify::types::{Artifact, Bundle, Sha256Hash};
    use sigstore_verify::{VerificationPolicy, Verifier};
    let trusted_root =
        TrustedRoot::from_json(&instance.trusted_root_json()).expect("the trusted root parses");
    let verifier = Verifier::new(&trusted_root).expect("the trusted root is usable");
    let Ok(bundle) = Bundle::from_json(std::str::from_utf8(bundle).expect("UTF-8")) else {
        return false;
    };
    let digest = Sha256Hash::from_hex(digest.trim_start_matches("sha256:")).expect("hex");
    let policy = VerificationPolicy::any_identity()
        .skip_tlog_unsafe()
        .skip_sct();
    verifier
        .verify(Artifact::from_digest(digest), &bundle, &policy)
        .is_ok()
}

#[test]
fn pulled_attestations_verify_for_the_image_digest_and_a_substitute_would_too() {
    let registry = DistributionRegistry::plain();
    let client = registry.client();
    let instance = TestInstance::timestamp_only();
    let image = push_attested_image(&client, "acme/api", "v1", &instance, |spec| spec);
    let bundle = client.get_blob("acme/api", image.bundle_digest());
    assert!(verifies_for(
        &instance,
        &bundle.body,
        &image.manifest_digest
    ));
    let statement = image.attestation().bundle_json.clone();
    assert!(statement.contains("dsseEnvelope"));

    // The substituted bundle is valid for the same image: a client that
    // skips the layer digest check would accept it.
    let corrupt = push_referrer_with_corrupt_layer(
        &registry,
        "acme/api",
        "v2",
        &instance,
        LayerCorruption::SubstitutedAtRest,
        |spec| spec,
    );
    let served = client.get_blob("acme/api", corrupt.bundle_digest());
    assert_ne!(sha256_digest(&served.body), corrupt.bundle_digest());
    assert!(verifies_for(
        &instance,
        &served.body,
        &corrupt.manifest_digest
    ));

    // An attestation about another digest does not verify for the image.
    let other = push_attested_image(&client, "acme/api", "v3", &instance, |spec| {
        let subject = spec.subject_name.clone();
        spec.with_subject(&subject, &"ab".repeat(32))
    });
    let bundle = client.get_blob("acme/api", other.bundle_digest());
    assert!(!verifies_for(
        &instance,
        &bundle.body,
        &other.manifest_digest
    ));
}
