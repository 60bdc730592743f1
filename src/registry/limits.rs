//! Size caps enforced while a body arrives, so that an oversized or endless answer is cut off
//! after `cap` bytes instead of being buffered whole and judged afterwards.

/// A body exceeded its cap; nothing beyond the cap was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapExceeded;

/// Whether a declared `Content-Length` already rules the body out before reading any of it.
pub(crate) fn declared_length_allowed(content_length: Option<u64>, cap: u64) -> bool {
    content_length.is_none_or(|length| length <= cap)
}

/// Bytes collected up to a cap.
#[derive(Debug)]
pub(crate) struct CappedBody {
    cap: u64,
    bytes: Vec<u8>,
}

impl CappedBody {
    /// An empty body; `expected` (the declared length, if any) only sizes the first allocation
    /// and is itself capped, so a lying header cannot make us reserve memory.
    pub fn new(cap: u64, expected: Option<u64>) -> Self {
        let reserve = expected.unwrap_or(0).min(cap).min(1 << 20);
        Self {
            cap,
            bytes: Vec::with_capacity(usize::try_from(reserve).unwrap_or(0)),
        }
    }

    /// Appends `chunk`, or refuses it whole when the total would pass the cap.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), CapExceeded> {
        let total = (self.bytes.len() as u64).saturating_add(chunk.len() as u64);
        if total > self.cap {
            return Err(CapExceeded);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Why a capped body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge { limit: u64 },
    Timeout,
    Transport(String),
}

/// The body of `response`, refused as soon as it passes `cap` bytes or `deadline` passes:
/// for callers outside the registry exchange (the GitHub API client).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, BodyError> {
    if !declared_length_allowed(response.content_length(), cap) {
        return Err(BodyError::TooLarge { limit: cap });
    }
    let mut body = CappedBody::new(cap, response.content_length());
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body
                .push(&chunk)
                .map_err(|_| BodyError::TooLarge { limit: cap })?,
            Ok(Ok(None)) => return Ok(body.into_bytes()),
            Ok(Err(error)) if !error.is_timeout() => {
                return Err(BodyError::Transport(super::transport::error_chain(
                    &error.without_url(),
                )))
            }
            _ => return Err(BodyError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_length_over_the_cap_is_refused_up_front() {
        assert!(declared_length_allowed(None, 10));
        assert!(declared_length_allowed(Some(10), 10));
        assert!(!declared_length_allowed(Some(11), 10));
    }

    #[test]
    fn body_may_reach_but_not_pass_the_cap() {
        let mut body = CappedBody::new(10, None);
        assert_eq!(body.push(b"12345"), Ok(()));
        assert_eq!(body.push(b"67890"), Ok(()));
        assert_eq!(body.push(b"1"), Err(CapExceeded));
        assert_eq!(body.into_bytes(), b"1234567890");
    }

    #[test]
    fn a_single_chunk_over_the_cap_is_refused() {
        let mut body = CappedBody::new(4, Some(4));
        assert_eq!(body.push(b"12345"), Err(CapExceeded));
        assert!(body.into_bytes().is_empty());
    }

    #[test]
    fn zero_cap_accepts_only_empty_bodies() {
        let mut body = CappedBody::new(0, Some(u64::MAX));
        assert_eq!(body.push(b""), Ok(()));
        assert_eq!(body.push(b"x"), Err(CapExceeded));
    }
}
