//! Reading referrer lists: the URL of the OCI 1.1 referrers API, the referrers tag schema's
//! tag, and picking the referrers of interest out of an image index.
//!
//! The caller asks for an artifact type *prefix* (`application/vnd.dev.sigstore.bundle`
//! covers `…bundle.v0.3+json` and `…bundle+json;version=0.3`), while the API's `artifactType`
//! filter is an exact match, and registries may ignore it. So the filter is applied here, on
//! the client, always.

use crate::check::reference::Digest;

use super::{Descriptor, OCI_INDEX};

/// Path (below `/v2/<repository>/`) of the referrers API for `digest`, with an optional
/// server-side `artifactType` filter.
pub(crate) fn referrers_path(digest: &Digest, artifact_type: Option<&str>) -> String {
    match artifact_type {
        Some(artifact_type) => format!(
            "referrers/{digest}?artifactType={}",
            percent_encode_query_value(artifact_type)
        ),
        None => format!("referrers/{digest}"),
    }
}

/// The referrers tag schema's tag for `digest`: `sha256-<hex>`.
pub(crate) fn referrers_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}

/// Percent-encodes everything but RFC 3986 unreserved characters. Media types carry `+`,
/// `/`, `;` and `=`, which a query would otherwise read as a space or as separators.
pub(crate) fn percent_encode_query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The shape of an image index, with entries kept raw so that one odd entry cannot make the
/// whole list unreadable.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexDocument {
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<serde_json::Value>,
}

/// The document is not an image index: a registry without the referrers API answering
/// something else, or a tag holding another kind of manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotAnIndex(pub String);

/// Referrers in an index whose `artifactType` starts with `prefix`, in index order, at most
/// `max_referrers` of them. Filtering happens before the bound, so unrelated referrers
/// (signatures, SBOMs) cannot crowd out the ones asked for. Entries that are not
/// well-formed descriptors are skipped.
pub(crate) fn matching_referrers(
    index_bytes: &[u8],
    prefix: &str,
    max_referrers: usize,
) -> Result<Vec<Descriptor>, NotAnIndex> {
    let document: IndexDocument = serde_json::from_slice(index_bytes)
        .map_err(|error| NotAnIndex(format!("not an image index: {error}")))?;
    if let Some(media_type) = document.media_type.as_deref() {
        if media_type != OCI_INDEX {
            return Err(NotAnIndex(format!(
                "media type {media_type:?} is not an OCI image index"
            )));
        }
    }
    Ok(document
        .manifests
        .into_iter()
        .filter(|entry| {
            entry
                .get("artifactType")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|artifact_type| artifact_type.starts_with(prefix))
        })
        .filter_map(|entry| serde_json::from_value::<Descriptor>(entry).ok())
        .take(max_referrers)
        .collect())
}

/// Referrer list pages read at most per digest: a registry may split a long list (OCI 1.1,
/// `Link: <…>; rel="next"`), and a hostile one may never stop.
pub(crate) const MAX_REFERRER_PAGES: usize = 8;

/// Why a `Link` header's next page is not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NextPageError {
    #[error("its next page {0:?} is not a referrers list of the same repository and digest")]
    Elsewhere(String),
    #[error("its next page {0:?} names another host")]
    OtherHost(String),
}

/// The next page of a referrers list from a response's `Link` header, as a path below
/// `/v2/<repository>/` (what the exchange sends), or `None` when there is none. Only the
/// referrers list of the same repository and digest on the same host is followed: the
/// registry, not the policy, writes the header, and it must not steer requests elsewhere.
pub(crate) fn next_page(
    link: &str,
    api_host: &str,
    repository: &str,
    digest: &Digest,
) -> Result<Option<String>, NextPageError> {
    let Some(target) = link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params.split(';').any(|param| {
            let param = param.trim().to_ascii_lowercase();
            param == "rel=\"next\"" || param == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    }) else {
        return Ok(None);
    };
    let path = match target.split_once("://") {
        Some((_, rest)) => {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if !host.eq_ignore_ascii_case(api_host) {
                return Err(NextPageError::OtherHost(target));
            }
            format!("/{path}")
        }
        None => target.clone(),
    };
    let below = format!("/v2/{repository}/");
    let list = format!("referrers/{digest}");
    match path.strip_prefix(&below) {
        Some(rest)
            if (rest == list || rest.starts_with(&format!("{list}?")))
                && !rest.contains('#')
                && !rest.contains("..") =>
        {
            Ok(Some(rest.to_owned()))
        }
        _ => Err(NextPageError::Elsewhere(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_list_on_the_same_host_is_a_next_page() {
        let digest = digest();
        let next = |link: &str| next_page(link, "registry.example:5000", "acme/api", &digest);
        let list = format!("/v2/acme/api/referrers/{digest}");
        assert_eq!(next(""), Ok(None));
        assert_eq!(next(&format!("<{list}?last=x>; rel=\"prev\"")), Ok(None));
        assert_eq!(
            next(&format!("<{list}?n=2&last=b>; rel=\"next\"")),
            Ok(Some(format!("referrers/{digest}?n=2&last=b")))
        );
        assert_eq!(
            next(&format!(
                "<https://REGISTRY.example:5000{list}?last=c>; rel=next"
            )),
            Ok(Some(format!("referrers/{digest}?last=c")))
        );
        assert_eq!(
            next(&format!(
                "<{list}?last=a>; rel=\"prev\", <{list}?last=c>; rel=\"next\""
            )),
            Ok(Some(format!("referrers/{digest}?last=c")))
        );
        for elsewhere in [
            format!("</v2/acme/other/referrers/{digest}?last=x>; rel=\"next\""),
            format!(
                "</v2/acme/api/referrers/{}?last=x>; rel=\"next\"",
                Digest::of_bytes(b"other")
            ),
            "</v2/acme/api/manifests/latest>; rel=\"next\"".to_owned(),
            format!("</v2/acme/api/referrers/{digest}/../../../other/manifests/x>; rel=\"next\""),
            format!("<{list}x>; rel=\"next\""),
        ] {
            assert!(
                matches!(next(&elsewhere), Err(NextPageError::Elsewhere(_))),
                "{elsewhere}"
            );
        }
        assert!(matches!(
            next(&format!(
                "<https://attacker.example{list}?last=x>; rel=\"next\""
            )),
            Err(NextPageError::OtherHost(_))
        ));
    }

    const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";

    fn digest() -> Digest {
        Digest::of_bytes(b"subject")
    }

    fn entry(artifact_type: &str, tag: u8) -> serde_json::Value {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": Digest::of_bytes(&[tag]).to_string(),
            "size": 100 + u64::from(tag),
            "artifactType": artifact_type,
        })
    }

    fn index(entries: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        }))
        .expect("json")
    }

    #[test]
    fn artifact_type_is_percent_encoded() {
        assert_eq!(
            percent_encode_query_value("application/vnd.dev.sigstore.bundle.v0.3+json"),
            "application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson"
        );
        assert_eq!(
            percent_encode_query_value("application/vnd.dev.sigstore.bundle+json;version=0.3"),
            "application%2Fvnd.dev.sigstore.bundle%2Bjson%3Bversion%3D0.3"
        );
        assert_eq!(percent_encode_query_value("a b&c~"), "a%20b%26c~");
        assert_eq!(percent_encode_query_value("é"), "%C3%A9");
    }

    #[test]
    fn paths_and_tags() {
        let digest = digest();
        assert_eq!(referrers_path(&digest, None), format!("referrers/{digest}"));
        assert_eq!(
            referrers_path(&digest, Some("a/b+c")),
            format!("referrers/{digest}?artifactType=a%2Fb%2Bc")
        );
        assert_eq!(referrers_tag(&digest), format!("sha256-{}", digest.hex()));
    }

    #[test]
    fn filters_by_prefix_covering_both_bundle_spellings() {
        let bytes = index(vec![
            entry("application/vnd.dev.sigstore.bundle.v0.3+json", 1),
            entry("application/spdx+json", 2),
            entry("application/vnd.dev.sigstore.bundle+json;version=0.3", 3),
            serde_json::json!({"mediaType": "x", "digest": "sha256:00", "size": 1}),
        ]);
        let found = matching_referrers(&bytes, BUNDLE_PREFIX, 64).expect("index");
        let types: Vec<_> = found
            .iter()
            .filter_map(|d| d.artifact_type.as_deref())
            .collect();
        assert_eq!(
            types,
            [
                "application/vnd.dev.sigstore.bundle.v0.3+json",
                "application/vnd.dev.sigstore.bundle+json;version=0.3"
            ]
        );
    }

    #[test]
    fn bound_applies_after_filtering() {
        let mut entries: Vec<_> = (0..100)
            .map(|i| entry("application/spdx+json", i))
            .collect();
        entries
            .extend((100..110).map(|i| entry("application/vnd.dev.sigstore.bundle.v0.3+json", i)));
        let found = matching_referrers(&index(entries), BUNDLE_PREFIX, 4).expect("index");
        assert_eq!(found.len(), 4);
        assert_eq!(found[0].size, 200);
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let bytes = index(vec![
            serde_json::json!({"artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}),
            entry("application/vnd.dev.sigstore.bundle.v0.3+json", 7),
        ]);
        let found = matching_referrers(&bytes, BUNDLE_PREFIX, 64).expect("index");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].size, 107);
    }

    #[test]
    fn non_index_documents_are_recognised() {
        assert!(matching_referrers(b"404 page not found", BUNDLE_PREFIX, 64).is_err());
        assert!(matching_referrers(b"{}", BUNDLE_PREFIX, 64).is_err());
        let manifest = serde_json::to_vec(&serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "manifests": [],
        }))
        .expect("json");
        assert!(matching_referrers(&manifest, BUNDLE_PREFIX, 64).is_err());
        // An index without mediaType (allowed by OCI) is still an index.
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(matching_referrers(bare, BUNDLE_PREFIX, 64), Ok(vec![]));
    }
}
