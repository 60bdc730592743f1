//! The only way TUF metadata and targets reach the process: GET under the configured
//! mirror URL, no redirects, no proxy from the environment, each body capped at the length
//! TUF allows for it, each request under a deadline, and a request budget per refresh.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use reqwest::Url;
use sigstore_tuf::transport::FetchFuture;
use sigstore_tuf::Repository;

use super::{TufTimeouts, MAX_REQUESTS_PER_REFRESH};
use crate::registry::{read_capped, BodyError, HostTransport, TransportLimits};

pub(super) struct MirrorTransport {
    metadata_base: Url,
    targets_base: Url,
    client: reqwest::Client,
    request_timeout: std::time::Duration,
    /// Requests since the refresh began; the updater resets it.
    requests: Arc<AtomicU32>,
}

impl MirrorTransport {
    pub(super) fn new(
        mirror: &Url,
        timeouts: TufTimeouts,
    ) -> Result<(Self, Arc<AtomicU32>), String> {
        let insecure = match mirror.scheme() {
            "https" => false,
            // TUF metadata is signed; plain HTTP is for in-cluster mirrors and tests.
            "http" => true,
            other => return Err(format!("mirror {mirror}: scheme {other} is not http(s)")),
        };
        let host = mirror
            .host_str()
            .ok_or_else(|| format!("mirror {mirror} has no host"))?;
        if mirror.query().is_some() || mirror.fragment().is_some() {
            return Err(format!("mirror {mirror} has a query or fragment"));
        }
        let metadata_base = directory(mirror);
        let targets_base = metadata_base
            .join("targets/")
            .map_err(|error| format!("mirror {mirror}: {error}"))?;
        let limits = TransportLimits {
            connect_timeout: timeouts.connect,
            request_timeout: timeouts.request,
            // A redirect could lead anywhere; the mirror is the only host contacted.
            max_redirects: 0,
            proxy: None,
        };
        let client = HostTransport::build(host, insecure, None, &limits)
            .map_err(|error| error.to_string())?
            .client;
        let requests = Arc::new(AtomicU32::new(0));
        Ok((
            MirrorTransport {
                metadata_base,
                targets_base,
                client,
                request_timeout: timeouts.request,
                requests: Arc::clone(&requests),
            },
            requests,
        ))
    }

    async fn get(
        &self,
        base: &Url,
        name: &str,
        max_length: u64,
    ) -> sigstore_tuf::Result<Option<Vec<u8>>> {
        let url = within(base, name).ok_or_else(|| {
            sigstore_tuf::Error::transport(format!("refused to fetch {name:?}: outside the mirror"))
        })?;
        if self.requests.fetch_add(1, Ordering::Relaxed) >= MAX_REQUESTS_PER_REFRESH {
            return Err(sigstore_tuf::Error::transport(format!(
                "more than {MAX_REQUESTS_PER_REFRESH} requests in one refresh"
            )));
        }
        let failed =
            |reason: String| sigstore_tuf::Error::transport(format!("GET {url}: {reason}"));
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let response =
            match tokio::time::timeout_at(deadline, self.client.get(url.clone()).send()).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => {
                    return Err(failed(crate::registry::error_chain(&error.without_url())))
                }
                Err(_) => return Err(failed("timed out".into())),
            };
        let status = response.status();
        // Object stores answer 403 for a missing object; TUF clients treat both as absent
        // (the end of the root chain).
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(failed(format!("status {status}")));
        }
        match read_capped(response, max_length, deadline).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(BodyError::TooLarge { limit }) => Err(failed(format!("larger than {limit} bytes"))),
            Err(BodyError::Timeout) => Err(failed("timed out".into())),
            Err(BodyError::Transport(reason)) => Err(failed(reason)),
        }
    }
}

impl Repository for MirrorTransport {
    fn fetch_metadata<'a>(&'a self, name: &'a str, max_length: u64) -> FetchFuture<'a> {
        Box::pin(self.get(&self.metadata_base, name, max_length))
    }

    fn fetch_target<'a>(&'a self, path: &'a str, max_length: u64) -> FetchFuture<'a> {
        Box::pin(self.get(&self.targets_base, path, max_length))
    }
}

/// `url` as a directory, so that joining a name appends to its path.
fn directory(url: &Url) -> Url {
    let mut base = url.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base
}

/// `base` joined with `name` when the result stays under `base`: names come from signed
/// metadata, but a name like `../x` or `//other.host/x` must still not leave the mirror.
fn within(base: &Url, name: &str) -> Option<Url> {
    if name.is_empty()
        || name.starts_with('/')
        || name.contains(['?', '#', '\\'])
        || name
            .split('/')
            .any(|segment| segment == ".." || segment == ".")
    {
        return None;
    }
    let url = base.join(name).ok()?;
    let same_origin = url.origin() == base.origin();
    (same_origin && url.path().starts_with(base.path())).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_the_mirror_are_refused() {
        let base = directory(&Url::parse("https://tuf.example/repo").unwrap());
        assert_eq!(
            within(&base, "2.root.json").unwrap().as_str(),
            "https://tuf.example/repo/2.root.json"
        );
        assert_eq!(
            within(&base, "a/b.json").unwrap().as_str(),
            "https://tuf.example/repo/a/b.json"
        );
        for hostile in [
            "../x.json",
            "a/../../x",
            "//other.example/x",
            "/x",
            "https://other.example/x",
            "x?y",
            "",
        ] {
            assert!(within(&base, hostile).is_none(), "{hostile}");
        }
    }

    #[tokio::test]
    async fn a_refresh_stops_at_its_request_budget() {
        // Nothing listens here: each request fails fast, and still counts.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let (transport, requests) = MirrorTransport::new(&url, TufTimeouts::default()).unwrap();
        let over_budget = || async {
            let error = transport
                .fetch_metadata("timestamp.json", 1024)
                .await
                .unwrap_err()
                .to_string();
            error.contains("more than 48 requests in one refresh")
        };
        for _ in 0..MAX_REQUESTS_PER_REFRESH {
            assert!(!over_budget().await);
        }
        assert!(over_budget().await);
        // The next refresh starts a new budget.
        requests.store(0, Ordering::Relaxed);
        assert!(!over_budget().await);
    }

    #[test]
    fn only_http_and_https_mirrors_are_accepted() {
        let timeouts = TufTimeouts::default();
        assert!(MirrorTransport::new(&Url::parse("file:///etc").unwrap(), timeouts).is_err());
        assert!(
            MirrorTransport::new(&Url::parse("https://tuf.example/?q").unwrap(), timeouts).is_err()
        );
        assert!(
            MirrorTransport::new(&Url::parse("http://127.0.0.1:1/").unwrap(), timeouts).is_ok()
        );
    }
}
