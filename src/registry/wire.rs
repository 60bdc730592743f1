//! The registry client's readers of what a registry sends, exposed as plain functions so that
//! the fuzz targets (`fuzz/`) and property tests reach them without a network. Not an API:
//! the client calls the functions these wrap.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Descriptor;

/// Every challenge of one `WWW-Authenticate` value: its scheme (lower case) and parameters.
pub fn challenges(header: &str) -> Vec<(String, BTreeMap<String, String>)> {
    super::auth::parse_challenges(header)
        .into_iter()
        .map(|challenge| (challenge.scheme, challenge.params))
        .collect()
}

/// The challenge the client answers among all `WWW-Authenticate` values: `Some(Some((realm,
/// service)))` for Bearer, `Some(None)` for Basic, `None` when it cannot answer any.
#[allow(clippy::option_option)]
pub fn chosen_challenge<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
) -> Option<Option<(String, Option<String>)>> {
    super::auth::select_challenge(header_values).map(|challenge| match challenge {
        super::auth::AuthChallenge::Bearer { realm, service } => Some((realm, service)),
        super::auth::AuthChallenge::Basic => None,
    })
}

/// A token endpoint's answer: the token and how long it is cached.
pub fn token_response(bytes: &[u8]) -> Result<(String, Duration), String> {
    super::auth::parse_token_response(bytes).map(|issued| (issued.token, issued.cache_for))
}

/// A manifest's media type, from its own `mediaType` or the `Content-Type` sent with it.
pub fn manifest_media_type(bytes: &[u8], content_type: Option<&str>) -> Result<String, String> {
    super::manifest::manifest_media_type(bytes, content_type)
}

/// The referrers of a referrers index (API answer or referrers tag) whose artifact type
/// starts with `prefix`, at most `max_referrers`.
pub fn matching_referrers(
    index_bytes: &[u8],
    prefix: &str,
    max_referrers: usize,
) -> Result<Vec<Descriptor>, String> {
    super::referrers::matching_referrers(index_bytes, prefix, max_referrers)
        .map_err(|not_an_index| not_an_index.0)
}
