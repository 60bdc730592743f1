//! GitHub's bulk endpoint, for a review that brings many uncached digests of one owner:
//! `POST /orgs/{org}/attestations/bulk-list` with `{"subject_digests": [...]}` answers
//! `{"attestations_subject_digests": {"sha256:…": [{"bundle", "repository_id",
//! "bundle_url"}] | null}, "page_info": {"has_next", "next", …}}` (GitHub's REST reference;
//! its own example writes the map as a list of one-key objects, so both are read). Pages
//! follow `Link: rel="next"` when given, else `page_info.next` as the `after` cursor: the
//! reference names `before`/`after` cursors "as given in the Link header" and a `page_info`
//! object, and which of the two GitHub fills could not be confirmed against GitHub itself.
//!
//! What it gives stands in, for a short while, for the per-digest listings that follow:
//! the organisation's listing of a digest is the bulk entry; a repository's is the entries
//! of that repository's ID (when the rule gives the ID), or none when the owner holds none
//! for the digest. Anything else, and anything a bulk request failed to answer completely,
//! is listed digest by digest as before. An owner whose organisation endpoint answers 404 is
//! asked at `POST /users/{username}/attestations/bulk-list` (the same shape, for a personal
//! account), and what worked is remembered for an hour; an owner for whom neither exists (an
//! older GitHub Enterprise Server) is not asked in bulk for that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use super::client::{
    api_request, api_url, locked, next_link, refusal, GithubClient, ListedAttestation,
};
use super::metrics::Endpoint;
use super::{GithubError, GithubLocation};
use crate::check::reference::Digest;
use crate::policy::GithubApi;
use crate::registry::read_capped;

/// How long what an owner's bulk endpoint is (or that it has none) is remembered.
const ACCOUNT_KEPT_FOR: Duration = Duration::from_secs(3600);
/// Owners remembered at most.
const MAX_ACCOUNTS: usize = 256;

/// Which bulk endpoint an owner has: `orgs/{owner}` or `users/{owner}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Account {
    Organization,
    User,
}

impl Account {
    fn path(self) -> &'static str {
        match self {
            Account::Organization => "orgs",
            Account::User => "users",
        }
    }
}

type Key = (String, String, Digest);
/// An owner's bulk endpoint (none: neither exists), and since when that is known.
type RememberedAccount = (Option<Account>, Instant);

struct Entry {
    at: Instant,
    url: String,
    attested: Arc<Vec<ListedAttestation>>,
}

/// Bulk answers per (API, owner, digest), bounded in count and age.
pub(super) struct Prefetched {
    entries: Mutex<HashMap<Key, Entry>>,
    /// Owners whose bulk endpoint is not the organisation's: a user's, or none.
    accounts: Mutex<HashMap<(String, String), RememberedAccount>>,
    capacity: usize,
    ttl: Duration,
}

fn api_key(api: &GithubApi) -> String {
    format!("{}{}", api.api_host, api.path_prefix)
}

impl Prefetched {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Prefetched {
            entries: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn key(api: &GithubApi, owner: &str, digest: &Digest) -> Key {
        // GitHub logins are case-insensitive.
        (api_key(api), owner.to_ascii_lowercase(), digest.clone())
    }

    fn fresh(&self, key: &Key) -> Option<(String, Arc<Vec<ListedAttestation>>)> {
        let entries = locked(&self.entries);
        entries
            .get(key)
            .filter(|entry| entry.at.elapsed() < self.ttl)
            .map(|entry| (entry.url.clone(), Arc::clone(&entry.attested)))
    }

    /// What a bulk answer says `location` lists for `digest`, when it says it completely.
    pub fn listed(
        &self,
        api: &GithubApi,
        location: &GithubLocation,
        digest: &Digest,
    ) -> Option<(String, Vec<ListedAttestation>)> {
        let (url, attested) = self.fresh(&Self::key(api, location.owner(), digest))?;
        match location {
            GithubLocation::Organization(_) => Some((url, attested.to_vec())),
            GithubLocation::Repository { .. } if attested.is_empty() => Some((url, Vec::new())),
            GithubLocation::Repository { id: Some(id), .. }
                if attested.iter().all(|listed| listed.repository_id.is_some()) =>
            {
                let own = attested
                    .iter()
                    .filter(|listed| {
                        listed
                            .repository_id
                            .map(|number| number.to_string())
                            .as_ref()
                            == Some(id)
                    })
                    .cloned()
                    .collect();
                Some((url, own))
            }
            GithubLocation::Repository { .. } => None,
        }
    }

    fn store(
        &self,
        api: &GithubApi,
        owner: &str,
        digest: &Digest,
        url: &str,
        attested: Vec<ListedAttestation>,
    ) {
        let mut entries = locked(&self.entries);
        if entries.len() >= self.capacity {
            entries.retain(|_, entry| entry.at.elapsed() < self.ttl);
        }
        if entries.len() >= self.capacity {
            // Any entry will do: a forgotten one costs one per-digest listing.
            if let Some(evicted) = entries.keys().next().cloned() {
                entries.remove(&evicted);
            }
        }
        entries.insert(
            Self::key(api, owner, digest),
            Entry {
                at: Instant::now(),
                url: url.to_owned(),
                attested: Arc::new(attested),
            },
        );
    }

    /// The bulk endpoint to ask for `owner`: the organisation's unless another answer is
    /// remembered; none when neither exists.
    fn account(&self, api: &GithubApi, owner: &str) -> Option<Account> {
        let key = (api_key(api), owner.to_ascii_lowercase());
        let mut accounts = locked(&self.accounts);
        match accounts.get(&key) {
            Some((account, at)) if at.elapsed() < ACCOUNT_KEPT_FOR => *account,
            Some(_) => {
                accounts.remove(&key);
                Some(Account::Organization)
            }
            None => Some(Account::Organization),
        }
    }

    fn remember(&self, api: &GithubApi, owner: &str, account: Option<Account>) {
        let mut accounts = locked(&self.accounts);
        if accounts.len() >= MAX_ACCOUNTS {
            accounts.retain(|_, (_, at)| at.elapsed() < ACCOUNT_KEPT_FOR);
        }
        if accounts.len() < MAX_ACCOUNTS {
            accounts.insert(
                (api_key(api), owner.to_ascii_lowercase()),
                (account, Instant::now()),
            );
        }
    }
}

fn is_not_found<T>(answer: &Result<T, GithubError>) -> bool {
    matches!(answer, Err(GithubError::Status { status: 404, .. }))
}

/// One page of a bulk answer: attestations by digest, and the cursor of the next page.
#[derive(Debug, Default)]
struct BulkPage {
    by_digest: HashMap<String, Vec<ListedAttestation>>,
    next_cursor: Option<String>,
}

fn parse_bulk_page(body: &[u8]) -> Result<BulkPage, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| error.to_string())?;
    if !value.is_object() {
        return Err("not a JSON object".to_owned());
    }
    let mut page = BulkPage::default();
    let mut add = |map: &serde_json::Map<String, serde_json::Value>| -> Result<(), String> {
        for (digest, listed) in map {
            let listed: Vec<ListedAttestation> = match listed {
                serde_json::Value::Null => Vec::new(),
                other => serde_json::from_value(other.clone())
                    .map_err(|error| format!("attestations of {digest}: {error}"))?,
            };
            page.by_digest
                .entry(digest.to_ascii_lowercase())
                .or_default()
                .extend(listed);
        }
        Ok(())
    };
    match value.get("attestations_subject_digests") {
        Some(serde_json::Value::Object(map)) => add(map)?,
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                let map = item
                    .as_object()
                    .ok_or("attestations_subject_digests lists a non-object")?;
                add(map)?;
            }
        }
        Some(serde_json::Value::Null) | None => {}
        Some(_) => return Err("attestations_subject_digests is neither a map nor a list".into()),
    }
    let page_info = value.get("page_info");
    let has_next = page_info
        .and_then(|info| info.get("has_next"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    page.next_cursor = page_info
        .and_then(|info| info.get("next"))
        .and_then(serde_json::Value::as_str)
        .filter(|cursor| has_next && !cursor.is_empty())
        .map(str::to_owned);
    Ok(page)
}

/// `url` with its `after` query parameter set to `cursor`.
fn with_cursor(url: &Url, cursor: &str) -> Url {
    let mut next = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != "after")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("after", cursor);
    next
}

impl GithubClient {
    /// Asks the bulk endpoint for `digests` of `owner` not already answered, when there are
    /// at least `bulk_min_digests` of them, at most `bulk_max_digests` per request and
    /// `bulk_max_requests` requests; keeps what each complete answer says.
    pub(super) async fn bulk_prefetch(&self, api: &GithubApi, owner: &str, digests: &[Digest]) {
        let options = self.options();
        let mut wanted: Vec<&Digest> = digests
            .iter()
            .filter(|digest| {
                self.prefetched
                    .fresh(&Prefetched::key(api, owner, digest))
                    .is_none()
            })
            .collect();
        wanted.sort();
        wanted.dedup();
        if wanted.len() < options.bulk_min_digests.max(1) {
            return;
        }
        let Some(mut account) = self.prefetched.account(api, owner) else {
            return;
        };
        let transport = match self.transport_for(api) {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(%error, "no bulk listing");
                return;
            }
        };
        let mut token = match self.credential(&transport, api).await {
            Ok(token) => token,
            Err(error) => {
                tracing::debug!(%error, "no bulk listing");
                return;
            }
        };
        let chunks = wanted
            .chunks(options.bulk_max_digests.max(1))
            .take(options.bulk_max_requests);
        for chunk in chunks {
            let mut answer = self
                .bulk_listing(&transport, api, (account, owner), chunk, &mut token)
                .await;
            if account == Account::Organization && is_not_found(&answer) {
                // Not an organisation: a personal account has the same endpoint.
                account = Account::User;
                answer = self
                    .bulk_listing(&transport, api, (account, owner), chunk, &mut token)
                    .await;
                if answer.is_ok() {
                    self.prefetched.remember(api, owner, Some(account));
                }
            }
            match answer {
                Ok((url, mut by_digest)) => {
                    for digest in chunk {
                        let attested = by_digest.remove(&digest.to_string()).unwrap_or_default();
                        self.prefetched.store(api, owner, digest, &url, attested);
                    }
                }
                Err(error) => {
                    tracing::info!(%error, owner, digests = chunk.len(), "bulk attestations listing failed; listing digest by digest");
                    if matches!(error, GithubError::Status { status: 404, .. }) {
                        self.prefetched.remember(api, owner, None);
                    }
                    return;
                }
            }
        }
    }

    /// Every page of one bulk request, or an error when any page failed or more pages than
    /// `max_pages` were offered (a partial answer says nothing about the digests left out).
    async fn bulk_listing(
        &self,
        http: &reqwest::Client,
        api: &GithubApi,
        (account, owner): (Account, &str),
        digests: &[&Digest],
        token: &mut Option<String>,
    ) -> Result<(String, HashMap<String, Vec<ListedAttestation>>), GithubError> {
        let options = self.options();
        let first = api_url(
            api,
            &format!(
                "{}/{owner}/attestations/bulk-list?per_page={}",
                account.path(),
                options.per_page
            ),
        )?;
        let body = serde_json::json!({
            "subject_digests": digests.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
        .to_string();
        let mut by_digest: HashMap<String, Vec<ListedAttestation>> = HashMap::new();
        let mut next = Some(first.clone());
        let mut pages = 0;
        while let Some(url) = next.take() {
            if pages == options.max_pages {
                return Err(GithubError::Malformed {
                    host: api.api_host.clone(),
                    what: format!("bulk listing of {owner}"),
                    reason: format!("more than {} pages", options.max_pages),
                });
            }
            pages += 1;
            let (page, link) = match self
                .bulk_page(http, api, &url, &body, token.as_deref())
                .await
            {
                Err(GithubError::Unauthorized { status: 401, .. })
                    if self.forget_refused(api, token.as_deref()) =>
                {
                    *token = self.credential(http, api).await?;
                    self.bulk_page(http, api, &url, &body, token.as_deref())
                        .await?
                }
                answer => answer?,
            };
            for (digest, listed) in page.by_digest {
                by_digest.entry(digest).or_default().extend(listed);
            }
            next = link.or_else(|| page.next_cursor.map(|cursor| with_cursor(&url, &cursor)));
        }
        Ok((first.to_string(), by_digest))
    }

    async fn bulk_page(
        &self,
        http: &reqwest::Client,
        api: &GithubApi,
        url: &Url,
        body: &str,
        token: Option<&str>,
    ) -> Result<(BulkPage, Option<Url>), GithubError> {
        let host = &api.api_host;
        let what = format!("bulk attestations listing {}", url.path());
        let request = api_request(http.post(url.clone()), token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        let (response, blocked_until, deadline) = self
            .api_exchange(request, Endpoint::BulkList, host, &what)
            .await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(refusal(host, status, blocked_until, what));
        }
        let link = next_link(response.headers(), url, api)?;
        let bytes = read_capped(response, self.options().max_listing_bytes, deadline)
            .await
            .map_err(|error| self.body_error(error, host, &what))?;
        let page = parse_bulk_page(&bytes).map_err(|reason| GithubError::Malformed {
            host: host.clone(),
            what,
            reason,
        })?;
        Ok((page, link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(hex: char) -> Digest {
        format!("sha256:{}", hex.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn listed(repository_id: Option<u64>) -> ListedAttestation {
        ListedAttestation {
            bundle: Some(serde_json::json!({"mediaType": "x"})),
            bundle_url: None,
            repository_id,
        }
    }

    #[test]
    fn both_documented_shapes_and_the_cursor_are_read() {
        let map = br#"{"attestations_subject_digests": {"sha256:AA": [{"bundle": {"a": 1}, "repository_id": 7}], "sha256:bb": null},
                       "page_info": {"has_next": true, "has_previous": false, "next": "Y3Vyc29y", "previous": ""}}"#;
        let page = parse_bulk_page(map).unwrap();
        assert_eq!(page.by_digest["sha256:aa"].len(), 1);
        assert_eq!(page.by_digest["sha256:aa"][0].repository_id, Some(7));
        assert!(page.by_digest["sha256:bb"].is_empty());
        assert_eq!(page.next_cursor.as_deref(), Some("Y3Vyc29y"));
        let list = br#"{"attestations_subject_digests": [{"sha256:aa": [{"bundle_url": "https://x/y"}]}], "page_info": {"has_next": false, "next": "z"}}"#;
        let page = parse_bulk_page(list).unwrap();
        assert_eq!(page.by_digest["sha256:aa"].len(), 1);
        assert_eq!(page.next_cursor, None, "has_next false: no next page");
        for bad in [
            &b"[]"[..],
            br#"{"attestations_subject_digests": 3}"#,
            br#"{"attestations_subject_digests": {"sha256:aa": [1]}}"#,
        ] {
            assert!(
                parse_bulk_page(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let url = Url::parse(
            "https://api.github.com/orgs/a/attestations/bulk-list?per_page=30&after=old",
        )
        .unwrap();
        assert_eq!(
            with_cursor(&url, "n+1").query(),
            Some("per_page=30&after=n%2B1")
        );
    }

    #[test]
    fn a_bulk_entry_answers_for_the_organisation_and_for_repositories_it_can_tell_apart() {
        let api = GithubApi::default();
        let store = Prefetched::new(8, Duration::from_secs(30));
        let (attested, empty) = (digest('a'), digest('b'));
        store.store(
            &api,
            "Acme",
            &attested,
            "u",
            vec![listed(Some(1)), listed(Some(2))],
        );
        store.store(&api, "acme", &empty, "u", Vec::new());
        let org = GithubLocation::Organization("ACME".into());
        let repository = |id: Option<&str>| GithubLocation::Repository {
            owner: "acme".into(),
            repo: "api".into(),
            id: id.map(str::to_owned),
        };
        assert_eq!(store.listed(&api, &org, &attested).unwrap().1.len(), 2);
        assert_eq!(
            store
                .listed(&api, &repository(Some("2")), &attested)
                .unwrap()
                .1
                .len(),
            1
        );
        assert_eq!(
            store
                .listed(&api, &repository(Some("3")), &attested)
                .unwrap()
                .1
                .len(),
            0
        );
        assert!(
            store.listed(&api, &repository(None), &attested).is_none(),
            "no ID: ask the repository"
        );
        assert_eq!(
            store
                .listed(&api, &repository(None), &empty)
                .unwrap()
                .1
                .len(),
            0
        );
        let other_api = GithubApi {
            api_host: "ghes.example.com".into(),
            ..GithubApi::default()
        };
        assert!(store.listed(&other_api, &org, &attested).is_none());
        assert!(store
            .listed(
                &api,
                &GithubLocation::Organization("other".into()),
                &attested
            )
            .is_none());
    }

    #[test]
    fn the_store_is_bounded_and_entries_expire() {
        let api = GithubApi::default();
        let store = Prefetched::new(2, Duration::from_secs(30));
        for hex in ['a', 'b', 'c'] {
            store.store(&api, "acme", &digest(hex), "u", Vec::new());
        }
        assert_eq!(locked(&store.entries).len(), 2);
        let expired = Prefetched::new(2, Duration::ZERO);
        expired.store(&api, "acme", &digest('a'), "u", Vec::new());
        assert!(expired
            .listed(
                &api,
                &GithubLocation::Organization("acme".into()),
                &digest('a')
            )
            .is_none());
    }
}
