//! What the client reads from manifest responses: the `Accept` list it sends, the
//! `Docker-Content-Digest` header, and a manifest's media type.

use crate::check::reference::Digest;

#[cfg(test)]
use super::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// Every manifest type we read, for `HEAD` and `GET` of manifests. Without it, distribution
/// answers 404 for an OCI index it holds, or converts to an older schema.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// The digest a registry announces in `Docker-Content-Digest`, when it is a sha256 digest we
/// can use; anything else is treated as absent, and the caller hashes the content itself.
pub(crate) fn announced_digest(header: Option<&reqwest::header::HeaderValue>) -> Option<Digest> {
    let text = header?.to_str().ok()?;
    Digest::parse(text.trim()).ok()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaTypeField {
    #[serde(default)]
    media_type: Option<String>,
}

/// A manifest's media type: its own `mediaType` field when present, because that is covered
/// by the digest we checked, and otherwise the `Content-Type` the registry sent (without
/// parameters). A body that is not a JSON object is not a manifest.
pub(crate) fn manifest_media_type(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<String, String> {
    let document: MediaTypeField = serde_json::from_slice(bytes)
        .map_err(|error| format!("manifest is not a JSON object: {error}"))?;
    if let Some(media_type) = document
        .media_type
        .filter(|media_type| !media_type.is_empty())
    {
        return Ok(media_type);
    }
    content_type
        .and_then(|content_type| content_type.split(';').next())
        .map(str::trim)
        .filter(|media_type| !media_type.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            "manifest names no media type and the registry sent no Content-Type".to_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn accept_lists_all_four_manifest_types() {
        let listed: Vec<&str> = MANIFEST_ACCEPT.split(", ").collect();
        assert_eq!(
            listed,
            [
                OCI_INDEX,
                OCI_MANIFEST,
                DOCKER_MANIFEST_LIST,
                DOCKER_MANIFEST
            ]
        );
        assert!(HeaderValue::from_str(MANIFEST_ACCEPT).is_ok());
    }

    #[test]
    fn announced_digest_must_be_sha256() {
        let digest = Digest::of_bytes(b"m");
        let header = HeaderValue::from_str(&digest.to_string()).expect("header");
        assert_eq!(announced_digest(Some(&header)), Some(digest));
        let sha512 = HeaderValue::from_static("sha512:abcd");
        assert_eq!(announced_digest(Some(&sha512)), None);
        assert_eq!(announced_digest(None), None);
    }

    #[test]
    fn media_type_prefers_the_manifest_field() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#;
        assert_eq!(
            manifest_media_type(body, Some("application/json")),
            Ok(OCI_INDEX.to_owned())
        );
    }

    #[test]
    fn media_type_falls_back_to_content_type_without_parameters() {
        let body = br#"{"schemaVersion":2}"#;
        assert_eq!(
            manifest_media_type(
                body,
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
            ),
            Ok(OCI_MANIFEST.to_owned())
        );
        assert!(manifest_media_type(body, None).is_err());
        assert!(manifest_media_type(b"not json", Some(OCI_MANIFEST)).is_err());
        assert!(manifest_media_type(b"[1,2]", Some(OCI_MANIFEST)).is_err());
    }
}
