//! Reading the GitHub URIs that Fulcio writes into Actions certificates.

const GITHUB: &str = "https://github.com/";
const WORKFLOWS_DIRECTORY: &str = ".github/workflows/";

/// `https://github.com/<owner>/<repo>`, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RepositoryUri<'a> {
    pub owner: &'a str,
    pub repo: &'a str,
}

impl RepositoryUri<'_> {
    pub(crate) fn same_repository(&self, other: &RepositoryUri<'_>) -> bool {
        self.owner.eq_ignore_ascii_case(other.owner) && self.repo.eq_ignore_ascii_case(other.repo)
    }
}

/// `https://github.com/<owner>/<repo>/.github/workflows/<file>@<ref>`, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkflowUri<'a> {
    pub repository: RepositoryUri<'a>,
    pub path: &'a str,
    pub git_ref: &'a str,
}

fn strip_github(uri: &str) -> Option<&str> {
    let prefix = uri.get(..GITHUB.len())?;
    prefix
        .eq_ignore_ascii_case(GITHUB)
        .then(|| &uri[GITHUB.len()..])
}

fn split_repository(rest: &str) -> Option<(RepositoryUri<'_>, Option<&str>)> {
    let (owner, rest) = rest.split_once('/')?;
    let (repo, tail) = match rest.split_once('/') {
        Some((repo, tail)) => (repo, Some(tail)),
        None => (rest, None),
    };
    let valid = is_owner_login(owner) && is_repository_name(repo);
    valid.then_some((RepositoryUri { owner, repo }, tail))
}

/// Parses a source repository URI; anything else (extra path, other host) is `None`.
pub(crate) fn parse_repository_uri(uri: &str) -> Option<RepositoryUri<'_>> {
    match split_repository(strip_github(uri)?)? {
        (repository, None) => Some(repository),
        (_, Some(_)) => None,
    }
}

/// Parses a Build Config or Build Signer URI. The ref follows the first `@`: workflow files
/// sit directly in `.github/workflows/`, whose names never need one.
pub(crate) fn parse_workflow_uri(uri: &str) -> Option<WorkflowUri<'_>> {
    let (repository, tail) = split_repository(strip_github(uri)?)?;
    let (path, git_ref) = tail?.split_once('@')?;
    let file = path.strip_prefix(WORKFLOWS_DIRECTORY)?;
    if file.is_empty() || git_ref.is_empty() {
        return None;
    }
    Some(WorkflowUri {
        repository,
        path,
        git_ref,
    })
}

/// `https://github.com/<owner>/<repo>/actions/runs/<id>[/attempts/<n>]`, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunUri<'a> {
    pub repository: RepositoryUri<'a>,
    pub run_id: &'a str,
}

/// Parses a Run Invocation URI, or a run URL copied from GitHub (without the attempt).
pub(crate) fn parse_run_uri(uri: &str) -> Option<RunUri<'_>> {
    let (repository, tail) = split_repository(strip_github(uri)?)?;
    let parts: Vec<&str> = tail?.split('/').collect();
    match parts.as_slice() {
        ["actions", "runs", run_id] | ["actions", "runs", run_id, "attempts", _]
            if is_run_id(run_id) && parts.get(4).is_none_or(|attempt| is_run_id(attempt)) =>
        {
            Some(RunUri { repository, run_id })
        }
        _ => None,
    }
}

/// Workflow run IDs and attempt numbers: decimal, at most 20 digits.
pub(crate) fn is_run_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// GitHub logins: letters, digits, hyphens, and underscores for enterprise managed users.
pub(crate) fn is_owner_login(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 100
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// GitHub repository names: letters, digits, `.`, `-`, `_`, but not `.` or `..`.
pub(crate) fn is_repository_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 100
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repository_uris() {
        let parsed = parse_repository_uri("https://github.com/malancas/attest-demo");
        assert_eq!(
            parsed,
            Some(RepositoryUri {
                owner: "malancas",
                repo: "attest-demo"
            })
        );
        for bad in [
            "https://github.com/malancas",
            "https://github.com/malancas/attest-demo/",
            "https://github.com/malancas/attest-demo/tree/main",
            "http://github.com/malancas/attest-demo",
            "https://github.com.evil.io/malancas/attest-demo",
            "https://gitlab.com/malancas/attest-demo",
            "github.com/malancas/attest-demo",
            "",
        ] {
            assert_eq!(parse_repository_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_workflow_uris() {
        let parsed = parse_workflow_uri(
            "https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d",
        )
        .expect("parses");
        assert_eq!(parsed.repository.owner, "github");
        assert_eq!(parsed.repository.repo, "artifact-attestations-workflows");
        assert_eq!(parsed.path, ".github/workflows/attest.yml");
        assert_eq!(parsed.git_ref, "09b495c3f12c7881b3cc17209a327792065c1a1d");
        for bad in [
            "https://github.com/acme/api/.github/workflows/release.yml",
            "https://github.com/acme/api/.github/workflows/@refs/heads/main",
            "https://github.com/acme/api/.github/workflows/release.yml@",
            "https://github.com/acme/api/scripts/release.yml@refs/heads/main",
            "https://github.com/acme/.github/workflows/release.yml@refs/heads/main",
        ] {
            assert_eq!(parse_workflow_uri(bad), None, "{bad}");
        }
    }
}
