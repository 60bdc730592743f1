//! Container image references, parsed and normalised the way the container ecosystem does it.
//!
//! The admission flow matches policy globs against the normalised name and resolves, verifies and
//! pins exactly the image the kubelet would pull. So this module reproduces the grammar and
//! normalisation of `github.com/distribution/reference` (`ParseNormalizedNamed` followed by
//! `TagNameOnly`), which containerd, Docker and the kubelet all use. Where we deviate, it is to
//! reject more, never to accept more, and the deviation is listed here.
//!
//! Normalisation decisions:
//! - The first `/`-separated component is a registry only if it is `localhost`, contains `.` or
//!   `:`, or contains an upper-case letter (repository paths cannot be upper case, so
//!   distribution reads such a component as a host). Otherwise the registry is `docker.io`.
//!   A reference without any `/` is always a Docker Hub name, so `localhost:5000` is the image
//!   `docker.io/library/localhost` with tag `5000`, as in Docker.
//! - The registry is reduced to one canonical spelling, because policy rules, exemptions,
//!   registry settings and credentials are all matched on it and a second spelling of the same
//!   host would fall outside them (see [`canonical_registry`]): the host is lower-cased (DNS is
//!   case-insensitive), the default port `:443` is dropped, and `index.docker.io` and
//!   `registry-1.docker.io` (the legacy name and the API host of Docker Hub) become
//!   `docker.io`. Here we deviate from distribution, which keeps host case and treats
//!   `registry-1.docker.io` as a registry of its own; the images are the same, and the pinned
//!   reference the webhook writes back uses the canonical spelling.
//! - Refused rather than normalised, as no real reference needs them: ports with leading zeros
//!   (`localhost:05000`), port 0 or above 65535, an empty port, IPv4-mapped IPv6 addresses, an
//!   IPv4 address in any spelling but four decimal numbers (`10.0.0.05`, `10.5`, `0xa.0.0.5`,
//!   which the C resolver reads as `10.0.0.5`; a host whose last label is a number is one), and a
//!   first component that is a host only because of its capital letters (`Foo/bar`; lower-cased
//!   it would be the Docker Hub image `foo/bar`).
//! - A bracketed IPv6 address is written in its RFC 5952 form (`[0:0::1]` becomes `[::1]`).
//! - On `docker.io` only, a one-component repository gets the `library/` prefix of official
//!   images: `nginx` and `docker.io/nginx` both become `docker.io/library/nginx`.
//! - Repository paths must be lower case.
//! - A reference with neither tag nor digest gets the tag `latest`. A digest alone gets no tag.
//!   A tag together with a digest keeps both; the digest wins for identity (the registry must
//!   not resolve the tag, the tag is only informational), as containerd and the kubelet do.
//! - Only `sha256` digests are accepted, in lower-case hex, because pinning and provenance
//!   subjects use sha256; `sha384`/`sha512`, which distribution would also accept, are rejected
//!   with a reason rather than half-supported.
//! - The 255-character limit applies to the repository path (`library/nginx`), excluding the
//!   registry, as in current distribution (`RepositoryNameTotalLengthMax`).
//! - Stricter than distribution: inputs over 4096 bytes, whitespace, a URL scheme (`https://`)
//!   and characters outside the grammar are rejected up front with their own reason, and a bare
//!   64-hex identifier is rejected like `ParseNormalizedNamed` does.
//!
//! Docker Hub's registry API is not served at `docker.io` but at `registry-1.docker.io`; see
//! [`registry_api_host`].

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// Inputs longer than this are rejected before any parsing, to bound work on hostile input.
pub const MAX_INPUT_BYTES: usize = 4096;
/// Longest accepted repository path (`library/nginx`), as in distribution.
pub const MAX_REPOSITORY_LENGTH: usize = 255;
/// Longest accepted tag, as in distribution and the OCI distribution spec.
pub const MAX_TAG_LENGTH: usize = 128;
/// The registry name that Docker Hub images normalise to.
pub const DOCKER_HUB_REGISTRY: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The other names of Docker Hub: the pre-v2 "Docker Index", still written in some manifests,
/// and the API host, which people copy from logs.
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", DOCKER_HUB_API_HOST];
/// The port https registries are reached on when a reference names none.
const DEFAULT_PORT: u16 = 443;
/// Longest registry host accepted: a DNS name (253) with a port, with room to spare.
const MAX_REGISTRY_LENGTH: usize = 300;
/// Namespace of Docker Hub's official images (`nginx` lives at `library/nginx`).
const OFFICIAL_IMAGES_NAMESPACE: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const SHA256_ALGORITHM: &str = "sha256";
const SHA256_HEX_LENGTH: usize = 64;
const EXPECTED_FORM: &str = "[registry[:port]/]repository[:tag][@sha256:<64 hex>]";

/// Maps a registry name to the host that serves its registry API.
///
/// Only Docker Hub differs: its canonical name `docker.io` is served at `registry-1.docker.io`
/// (the same mapping containerd and Docker apply). Every other registry, including an explicit
/// `registry-1.docker.io`, is served at its own name.
pub fn registry_api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB_REGISTRY {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

/// A parsed and normalised image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageReference {
    /// Parses and normalises a reference as written in a pod spec; see the module docs.
    pub fn parse(input: &str) -> Result<Self, ImageReferenceError> {
        reject_unparseable_input(input)?;

        // The digest cannot contain '@' or '/', so splitting it off first leaves the
        // registry/path/tag part exactly as distribution sees it.
        let (name_and_tag, digest_text) = match input.split_once('@') {
            Some((name_and_tag, digest_text)) => (name_and_tag, Some(digest_text)),
            None => (input, None),
        };

        let (explicit_registry, path_and_tag) = split_registry(name_and_tag);
        let registry = match explicit_registry {
            Some(registry) => canonical_registry(registry).map_err(|error| {
                ImageReferenceError::InvalidRegistry {
                    input: input.to_owned(),
                    registry: error.registry,
                    problem: error.problem,
                }
            })?,
            None => DOCKER_HUB_REGISTRY.to_owned(),
        };
        let registry = registry.as_str();

        // Without a registry component the path cannot contain ':', so the first ':' starts
        // the tag. A second ':' ends up in the tag and is rejected there.
        let (path, tag) = match path_and_tag.split_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (path_and_tag, None),
        };

        validate_path(input, path)?;
        let repository = if registry == DOCKER_HUB_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_IMAGES_NAMESPACE}{path}")
        } else {
            path.to_owned()
        };
        if repository.len() > MAX_REPOSITORY_LENGTH {
            return Err(ImageReferenceError::RepositoryTooLong {
                input: input.to_owned(),
                length: repository.len(),
            });
        }

        if let Some(tag) = tag {
            validate_tag(input, tag)?;
        }

        let digest = digest_text
            .map(Digest::parse)
            .transpose()
            .map_err(|source| ImageReferenceError::InvalidDigest {
                input: input.to_owned(),
                source,
            })?;

        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };

        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry in its canonical spelling (see [`canonical_registry`]): `docker.io`,
    /// `ghcr.io`, `localhost:5000`. Policy, registry settings and credentials match on this.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host serving this image's registry API (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        registry_api_host(&self.registry)
    }

    /// The repository path within the registry: `library/nginx`, `acme/api`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Registry and repository, without tag or digest: what policy globs match against.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, `latest` when the input had neither tag nor digest; `None` for digest-only input.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference is pinned. It identifies the image even if a tag is present.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same reference pinned to `digest`; the tag is kept so people can still read it.
    pub fn with_digest(&self, digest: Digest) -> ImageReference {
        ImageReference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

/// The canonical full form: `docker.io/library/nginx:latest`, `ghcr.io/a/b:1@sha256:<hex>`.
impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageReference {
    type Err = ImageReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

/// A sha256 content digest, stored as 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lower-case hex>`. Other algorithms and upper-case hex are rejected
    /// (go-digest rejects upper case too, so accepting it would disagree with the registry).
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        if text.is_empty() {
            return Err(DigestError::Empty);
        }
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(DigestError::MissingAlgorithm);
        };
        if algorithm != SHA256_ALGORITHM {
            return Err(DigestError::UnsupportedAlgorithm {
                // Bounded so an error message never echoes an arbitrarily long input.
                algorithm: algorithm.chars().take(32).collect(),
            });
        }
        if let Some(character) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(DigestError::NotHex { character });
        }
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(DigestError::UpperCaseHex);
        }
        if hex.len() != SHA256_HEX_LENGTH {
            return Err(DigestError::WrongLength { length: hex.len() });
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }

    /// The sha256 digest of `bytes`, e.g. of a manifest as served by the registry.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self {
            hex: hex::encode(sha2::Sha256::digest(bytes)),
        }
    }

    /// The 64 lower-case hex characters, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// `sha256:<hex>`, the form used in references, registry APIs and in-toto subjects.
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256_ALGORITHM}:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Why a digest was rejected. Messages never echo more than a short, bounded fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    #[error("digest is empty; expected sha256:<64 lower-case hex characters>")]
    Empty,
    #[error("digest has no algorithm; expected sha256:<64 lower-case hex characters>")]
    MissingAlgorithm,
    #[error("digest algorithm {algorithm:?} is not supported; only sha256 digests are accepted")]
    UnsupportedAlgorithm { algorithm: String },
    #[error("sha256 digest contains {character:?}; expected only hex characters 0-9 and a-f")]
    NotHex { character: char },
    #[error("sha256 digest must be lower-case hex; expected only 0-9 and a-f")]
    UpperCaseHex,
    #[error("sha256 digest has {length} hex characters; expected exactly 64")]
    WrongLength { length: usize },
}

/// Why an image reference was rejected: one line naming what is wrong and what is expected.
/// The input is quoted with escapes, so control characters cannot break the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageReferenceError {
    #[error(
        "invalid image reference: {length} bytes is longer than the limit of {MAX_INPUT_BYTES}"
    )]
    InputTooLong { length: usize },
    #[error("invalid image reference \"\": empty; expected {EXPECTED_FORM}")]
    Empty,
    #[error("invalid image reference {input:?}: contains whitespace {character:?}; image references have no spaces, tabs or newlines")]
    Whitespace { input: String, character: char },
    #[error("invalid image reference {input:?}: starts with the URL scheme \"{scheme}://\"; expected {EXPECTED_FORM} without a scheme")]
    Scheme { input: String, scheme: String },
    #[error("invalid image reference {input:?}: contains {character:?}; only ASCII letters, digits and . _ - / : @ [ ] are allowed")]
    InvalidCharacter { input: String, character: char },
    #[error("invalid image reference {input:?}: a bare 64-character hex id is not a repository name; expected repository@sha256:<hex>")]
    BareIdentifier { input: String },
    #[error("invalid image reference {input:?}: registry {registry:?} is invalid: {problem}")]
    InvalidRegistry {
        input: String,
        registry: String,
        problem: &'static str,
    },
    #[error(
        "invalid image reference {input:?}: repository name is missing; expected {EXPECTED_FORM}"
    )]
    MissingRepository { input: String },
    #[error("invalid image reference {input:?}: repository must be lower case")]
    UpperCaseRepository { input: String },
    #[error("invalid image reference {input:?}: repository path has an empty component; expected components separated by single '/'")]
    EmptyPathComponent { input: String },
    #[error("invalid image reference {input:?}: repository path must not contain \"..\"; expected lower-case letters and digits joined by single '.', '_', '__' or dashes")]
    DotDot { input: String },
    #[error("invalid image reference {input:?}: repository path component {component:?} is invalid; expected lower-case letters and digits joined by '.', '_', '__' or dashes, starting and ending with a letter or digit")]
    InvalidPathComponent { input: String, component: String },
    #[error("invalid image reference {input:?}: repository path is {length} characters long; the limit is {MAX_REPOSITORY_LENGTH}")]
    RepositoryTooLong { input: String, length: usize },
    #[error("invalid image reference {input:?}: tag after ':' is empty; remove the trailing ':' or give a tag")]
    EmptyTag { input: String },
    #[error("invalid image reference {input:?}: tag is {length} characters long; the limit is {MAX_TAG_LENGTH}")]
    TagTooLong { input: String, length: usize },
    #[error("invalid image reference {input:?}: tag {tag:?} is invalid; expected a letter, digit or '_' followed by letters, digits, '_', '.' or '-'")]
    InvalidTag { input: String, tag: String },
    #[error("invalid image reference {input:?}: {source}")]
    InvalidDigest {
        input: String,
        #[source]
        source: DigestError,
    },
}

/// Why a registry host was refused: the host (bounded) and a short phrase naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry host {registry:?} is invalid: {problem}")]
pub struct InvalidRegistryHost {
    pub registry: String,
    pub problem: &'static str,
}

/// The one spelling of a registry that the policy, registry settings and credentials are
/// matched on: `host[:port]` with the host lower-cased, the default port 443 dropped, a
/// bracketed IPv6 address in RFC 5952 form, and every name of Docker Hub as `docker.io`.
/// Spellings that could be read two ways are refused (see the module docs).
///
/// This is a name, not a network address: Docker Hub's API is still reached at
/// `registry-1.docker.io` ([`registry_api_host`]).
pub fn canonical_registry(registry: &str) -> Result<String, InvalidRegistryHost> {
    let refuse = |problem| InvalidRegistryHost {
        // Bounded so an error message never echoes an arbitrarily long input.
        registry: registry.chars().take(MAX_REGISTRY_LENGTH).collect(),
        problem,
    };
    if registry.len() > MAX_REGISTRY_LENGTH {
        return Err(refuse("longer than 300 characters"));
    }
    let (host, port) = split_host_and_port(registry).map_err(refuse)?;
    let port = match port {
        None => None,
        Some(port) => match canonical_port(port).map_err(refuse)? {
            DEFAULT_PORT => None,
            port => Some(port),
        },
    };
    let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) && port.is_none() {
        DOCKER_HUB_REGISTRY.to_owned()
    } else {
        host
    };
    let canonical = match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    // `Foo/bar` names host `Foo` only because of the capital; lower-cased, `foo/bar` would be
    // a Docker Hub image. No canonical spelling says what the original meant, so refuse it.
    if !names_a_registry(&canonical) {
        return Err(refuse(
            "a host without '.' or ':' other than localhost is read as a Docker Hub namespace once lower-cased; add the domain or port",
        ));
    }
    Ok(canonical)
}

/// The host, lower-cased (an IPv6 address in RFC 5952 form, with brackets), and the port text.
fn split_host_and_port(registry: &str) -> Result<(String, Option<&str>), &'static str> {
    if let Some(bracketed) = registry.strip_prefix('[') {
        let Some((address, after_address)) = bracketed.split_once(']') else {
            return Err("IPv6 address has no closing ']'");
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("IPv6 address must be hex digits and ':' inside brackets, like [::1]");
        }
        let address: std::net::Ipv6Addr = address
            .parse()
            .map_err(|_| "IPv6 address inside the brackets is not a valid address")?;
        if address.to_ipv4_mapped().is_some() {
            return Err("IPv4-mapped IPv6 addresses are refused; write the IPv4 address");
        }
        let port = match after_address {
            "" => None,
            _ => Some(
                after_address
                    .strip_prefix(':')
                    .ok_or("expected ':<port>' after the bracketed IPv6 address")?,
            ),
        };
        return Ok((format!("[{address}]"), port));
    }
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    if host.is_empty() {
        return Err("host name is empty; expected host[:port]");
    }
    if !host.split('.').all(is_host_label) {
        return Err("host name must be labels of letters, digits and inner dashes, separated by single dots");
    }
    // No top-level domain is a number, so such a host is an IPv4 address. The C resolver
    // reads `10.0.0.05`, `10.5` and `0xa.0.0.5` as 10.0.0.5 (inet_aton), which one rule
    // naming `10.0.0.5:5000` would not cover: only the dotted-quad spelling is one.
    if host.rsplit('.').next().is_some_and(is_numeric_label) && !is_dotted_quad(host) {
        return Err(
            "an IPv4 address must be four decimal numbers from 0 to 255 without leading zeros, like 10.0.0.5",
        );
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// A label that `inet_aton` reads as a number: decimal, octal (leading 0) or hex (`0x`).
fn is_numeric_label(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    match lower.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// `a.b.c.d`, each 0–255 in decimal without leading zeros: the one spelling of an address.
fn is_dotted_quad(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part.len() == 1 || !part.starts_with('0'))
                && part.parse::<u8>().is_ok()
        })
}

fn canonical_port(port: &str) -> Result<u16, &'static str> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port must be one or more digits");
    }
    if port.starts_with('0') {
        return Err("port must be written without leading zeros, between 1 and 65535");
    }
    port.parse().map_err(|_| "port must be between 1 and 65535")
}

/// Whether distribution reads `first` (the first `/`-separated component) as a registry.
fn names_a_registry(first: &str) -> bool {
    first == "localhost"
        || first.contains(['.', ':'])
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// Checks that need the whole input, done before any splitting so that the later steps only
/// ever see bounded ASCII text from the grammar's alphabet.
fn reject_unparseable_input(input: &str) -> Result<(), ImageReferenceError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(ImageReferenceError::InputTooLong {
            length: input.len(),
        });
    }
    if input.is_empty() {
        return Err(ImageReferenceError::Empty);
    }
    if let Some(character) = input.chars().find(|c| c.is_whitespace()) {
        return Err(ImageReferenceError::Whitespace {
            input: input.to_owned(),
            character,
        });
    }
    if let Some((scheme, _)) = input.split_once("://") {
        return Err(ImageReferenceError::Scheme {
            input: input.to_owned(),
            scheme: scheme.to_owned(),
        });
    }
    if let Some(character) = input.chars().find(|&c| !is_grammar_character(c)) {
        return Err(ImageReferenceError::InvalidCharacter {
            input: input.to_owned(),
            character,
        });
    }
    // `docker run <image id>` accepts such ids, but they name no repository, and
    // distribution's ParseNormalizedNamed refuses them so they are never mistaken for one.
    if input.len() == SHA256_HEX_LENGTH && input.bytes().all(is_lower_hex) {
        return Err(ImageReferenceError::BareIdentifier {
            input: input.to_owned(),
        });
    }
    Ok(())
}

fn is_grammar_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || "._-/:@[]".contains(character)
}

fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

/// Splits off the registry component the way distribution's `splitDockerDomain` does; returns
/// `None` as the registry when the name lives on Docker Hub by default.
fn split_registry(name_and_tag: &str) -> (Option<&str>, &str) {
    match name_and_tag.split_once('/') {
        Some((first, rest)) if names_a_registry(first) => (Some(first), rest),
        _ => (None, name_and_tag),
    }
}

/// distribution's `domainNameComponent`: alphanumerics, with dashes only inside.
fn is_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// distribution's `remoteName`: `/`-separated components of lower-case alphanumerics joined by
/// one '.', one '_', two '_' or any number of '-'.
fn validate_path(input: &str, path: &str) -> Result<(), ImageReferenceError> {
    if path.is_empty() {
        return Err(ImageReferenceError::MissingRepository {
            input: input.to_owned(),
        });
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ImageReferenceError::UpperCaseRepository {
            input: input.to_owned(),
        });
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(ImageReferenceError::EmptyPathComponent {
                input: input.to_owned(),
            });
        }
        // Reported on its own because ".." reads as path traversal to a reviewer.
        if component.contains("..") {
            return Err(ImageReferenceError::DotDot {
                input: input.to_owned(),
            });
        }
        if !is_path_component(component) {
            return Err(ImageReferenceError::InvalidPathComponent {
                input: input.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

fn is_path_component(component: &str) -> bool {
    let is_alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !is_alphanumeric(first) || !is_alphanumeric(last) {
        return false;
    }
    // With both ends alphanumeric, every run of other bytes sits between alphanumerics and must
    // be exactly one allowed separator.
    component
        .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
        })
}

/// distribution's `tag`: `[\w][\w.-]{0,127}`.
fn validate_tag(input: &str, tag: &str) -> Result<(), ImageReferenceError> {
    if tag.is_empty() {
        return Err(ImageReferenceError::EmptyTag {
            input: input.to_owned(),
        });
    }
    if tag.len() > MAX_TAG_LENGTH {
        return Err(ImageReferenceError::TagTooLong {
            input: input.to_owned(),
            length: tag.len(),
        });
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut bytes = tag.bytes();
    let starts_with_word = bytes.next().is_some_and(is_word);
    if !starts_with_word || !bytes.all(|b| is_word(b) || b == b'.' || b == b'-') {
        return Err(ImageReferenceError::InvalidTag {
            input: input.to_owned(),
            tag: tag.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real manifest digest shape; the value itself does not matter.
    const HEX: &str = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";

    /// `<H>` in a table row stands for [`HEX`], to keep rows readable.
    fn expand(text: &str) -> String {
        text.replace("<H>", HEX)
    }

    /// input, registry, repository, tag, has digest, canonical form
    type AcceptedRow = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        bool,
        &'static str,
    );

    #[rustfmt::skip]
    const ACCEPTED: &[AcceptedRow] = &[
        // Docker Hub official images, in every spelling.
        ("nginx", "docker.io", "library/nginx", Some("latest"), false, "docker.io/library/nginx:latest"),
        ("nginx:1.27-alpine", "docker.io", "library/nginx", Some("1.27-alpine"), false, "docker.io/library/nginx:1.27-alpine"),
        ("library/nginx", "docker.io", "library/nginx", Some("latest"), false, "docker.io/library/nginx:latest"),
        ("docker.io/nginx", "docker.io", "library/nginx", Some("latest"), false, "docker.io/library/nginx:latest"),
        ("docker.io/library/nginx:stable", "docker.io", "library/nginx", Some("stable"), false, "docker.io/library/nginx:stable"),
        ("index.docker.io/library/busybox:1.36", "docker.io", "library/busybox", Some("1.36"), false, "docker.io/library/busybox:1.36"),
        ("index.docker.io/nginx", "docker.io", "library/nginx", Some("latest"), false, "docker.io/library/nginx:latest"),
        // Docker Hub's API host is one more name of it (distribution keeps it apart; we do not).
        ("registry-1.docker.io/library/nginx", "docker.io", "library/nginx", Some("latest"), false, "docker.io/library/nginx:latest"),
        ("registry-1.docker.io/nginx", "docker.io", "library/nginx", Some("latest"), false, "docker.io/library/nginx:latest"),
        // Docker Hub user images.
        ("bitnami/redis:7.2", "docker.io", "bitnami/redis", Some("7.2"), false, "docker.io/bitnami/redis:7.2"),
        ("grafana/grafana-oss:11.0.0", "docker.io", "grafana/grafana-oss", Some("11.0.0"), false, "docker.io/grafana/grafana-oss:11.0.0"),
        ("docker.io/user/app_name-x.y:TAG_1", "docker.io", "user/app_name-x.y", Some("TAG_1"), false, "docker.io/user/app_name-x.y:TAG_1"),
        // Other public registries.
        ("ghcr.io/sigstore/cosign/cosign:v2.4.1", "ghcr.io", "sigstore/cosign/cosign", Some("v2.4.1"), false, "ghcr.io/sigstore/cosign/cosign:v2.4.1"),
        ("ghcr.io/actions/actions-runner:2.317.0", "ghcr.io", "actions/actions-runner", Some("2.317.0"), false, "ghcr.io/actions/actions-runner:2.317.0"),
        ("ghcr.io/acme/api", "ghcr.io", "acme/api", Some("latest"), false, "ghcr.io/acme/api:latest"),
        ("gcr.io/distroless/static-debian12:nonroot", "gcr.io", "distroless/static-debian12", Some("nonroot"), false, "gcr.io/distroless/static-debian12:nonroot"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io", "pause", Some("3.10"), false, "registry.k8s.io/pause:3.10"),
        ("registry.k8s.io/kube-apiserver:v1.31.0", "registry.k8s.io", "kube-apiserver", Some("v1.31.0"), false, "registry.k8s.io/kube-apiserver:v1.31.0"),
        ("quay.io/prometheus/node-exporter:v1.8.2", "quay.io", "prometheus/node-exporter", Some("v1.8.2"), false, "quay.io/prometheus/node-exporter:v1.8.2"),
        ("quay.io/jetstack/cert-manager-controller:v1.15.3", "quay.io", "jetstack/cert-manager-controller", Some("v1.15.3"), false, "quay.io/jetstack/cert-manager-controller:v1.15.3"),
        ("public.ecr.aws/docker/library/alpine:3.20", "public.ecr.aws", "docker/library/alpine", Some("3.20"), false, "public.ecr.aws/docker/library/alpine:3.20"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:2024.06.01", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "team/app", Some("2024.06.01"), false, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:2024.06.01"),
        ("mcr.microsoft.com/dotnet/aspnet:8.0", "mcr.microsoft.com", "dotnet/aspnet", Some("8.0"), false, "mcr.microsoft.com/dotnet/aspnet:8.0"),
        ("myregistry.azurecr.io/samples/hello__world--v2:_1", "myregistry.azurecr.io", "samples/hello__world--v2", Some("_1"), false, "myregistry.azurecr.io/samples/hello__world--v2:_1"),
        // Local and private registries, ports, IP addresses.
        ("localhost:5000/app", "localhost:5000", "app", Some("latest"), false, "localhost:5000/app:latest"),
        ("localhost/app:dev", "localhost", "app", Some("dev"), false, "localhost/app:dev"),
        ("registry.internal:5000/team/app:1.0", "registry.internal:5000", "team/app", Some("1.0"), false, "registry.internal:5000/team/app:1.0"),
        ("192.168.1.10:5000/app:v1", "192.168.1.10:5000", "app", Some("v1"), false, "192.168.1.10:5000/app:v1"),
        ("[::1]:5000/app", "[::1]:5000", "app", Some("latest"), false, "[::1]:5000/app:latest"),
        ("[2001:db8::1]/team/app:1.0", "[2001:db8::1]", "team/app", Some("1.0"), false, "[2001:db8::1]/team/app:1.0"),
        // Without a '/', "localhost:5000" is Docker Hub's "localhost" with tag 5000, as in Docker.
        ("localhost:5000", "docker.io", "library/localhost", Some("5000"), false, "docker.io/library/localhost:5000"),
        ("localhost", "docker.io", "library/localhost", Some("latest"), false, "docker.io/library/localhost:latest"),
        // An upper-case first component is a host to distribution; hosts are lower-cased.
        ("GHCR.io/acme/api:1", "ghcr.io", "acme/api", Some("1"), false, "ghcr.io/acme/api:1"),
        // Digests: alone there is no tag; with a tag both are kept.
        ("nginx@sha256:<H>", "docker.io", "library/nginx", None, true, "docker.io/library/nginx@sha256:<H>"),
        ("nginx:1.27@sha256:<H>", "docker.io", "library/nginx", Some("1.27"), true, "docker.io/library/nginx:1.27@sha256:<H>"),
        ("ghcr.io/acme/api:v1.2.3@sha256:<H>", "ghcr.io", "acme/api", Some("v1.2.3"), true, "ghcr.io/acme/api:v1.2.3@sha256:<H>"),
        ("registry.k8s.io/ingress-nginx/controller:v1.11.2@sha256:<H>", "registry.k8s.io", "ingress-nginx/controller", Some("v1.11.2"), true, "registry.k8s.io/ingress-nginx/controller:v1.11.2@sha256:<H>"),
        ("localhost:5000/app@sha256:<H>", "localhost:5000", "app", None, true, "localhost:5000/app@sha256:<H>"),
        ("[::1]:5000/team/app:1@sha256:<H>", "[::1]:5000", "team/app", Some("1"), true, "[::1]:5000/team/app:1@sha256:<H>"),
    ];

    /// input, fragment of the reason
    #[rustfmt::skip]
    const REJECTED: &[(&str, &str)] = &[
        ("", "empty"),
        ("Nginx", "invalid image reference \"Nginx\": repository must be lower case"),
        ("docker.io/Library/nginx", "repository must be lower case"),
        ("ghcr.io/Acme/api:1", "repository must be lower case"),
        ("localhost:5000/App", "repository must be lower case"),
        ("ghcr.io//api", "empty component"),
        ("ghcr.io/acme/", "empty component"),
        ("/nginx", "empty component"),
        ("docker.io/", "repository name is missing"),
        (":latest", "repository name is missing"),
        ("@sha256:<H>", "repository name is missing"),
        ("ghcr.io/acme/../api", "must not contain \"..\""),
        ("ghcr.io/acme/a..b", "must not contain \"..\""),
        ("ghcr.io/acme/-api", "component \"-api\" is invalid"),
        ("ghcr.io/acme/api_", "component \"api_\" is invalid"),
        ("ghcr.io/acme/a___b", "component \"a___b\" is invalid"),
        ("ghcr.io/acme/a._b", "component \"a._b\" is invalid"),
        ("nginx:", "tag after ':' is empty"),
        ("ghcr.io/acme/api:@sha256:<H>", "tag after ':' is empty"),
        ("nginx:.hidden", "tag \".hidden\" is invalid"),
        ("nginx:-rc1", "tag \"-rc1\" is invalid"),
        ("nginx:1:2", "tag \"1:2\" is invalid"),
        ("a/b:c/d", "tag \"c/d\" is invalid"),
        ("nginx@", "digest is empty"),
        ("nginx:1@", "digest is empty"),
        ("nginx@<H>", "digest has no algorithm"),
        ("nginx@sha256:abc", "has 3 hex characters; expected exactly 64"),
        ("nginx@sha256:<H>00", "has 66 hex characters"),
        ("nginx@sha512:<H><H>", "only sha256 digests are accepted"),
        ("nginx@md5:d41d8cd98f00b204e9800998ecf8427e", "only sha256 digests are accepted"),
        ("nginx@SHA256:<H>", "only sha256 digests are accepted"),
        ("nginx@sha256:A3ED95CAEB02FFE68CDD9FD84406680AE93D633CB16422D00E8A7C22955B46D4", "must be lower-case hex"),
        ("nginx@sha256:gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg", "contains 'g'"),
        ("nginx@sha256:<H>@sha256:<H>", "contains '@'"),
        (" nginx", "contains whitespace ' '"),
        ("nginx ", "contains whitespace"),
        ("ngi nx", "contains whitespace"),
        ("nginx\n", "contains whitespace '\\n'"),
        ("nginx\u{a0}", "contains whitespace"),
        ("nginx\0", "contains '\\0'"),
        ("nginx:ü", "contains 'ü'"),
        ("ghcr.io/acme/api#1", "contains '#'"),
        ("https://ghcr.io/acme/api", "URL scheme \"https://\""),
        ("docker://nginx", "URL scheme \"docker://\""),
        ("<H>", "bare 64-character hex id"),
        ("my_registry.com/app", "registry \"my_registry.com\" is invalid"),
        ("example.com./app", "separated by single dots"),
        ("-bad.example.com/app", "inner dashes"),
        (":5000/app", "host name is empty"),
        ("localhost:/app", "port must be one or more digits"),
        ("localhost:50a0/app", "port must be one or more digits"),
        ("[::1/app", "no closing ']'"),
        ("[zz::1]:5000/app", "IPv6 address must be hex digits"),
        ("[]:5000/app", "IPv6 address must be hex digits"),
        ("[::1]5000/app", "expected ':<port>'"),
        ("[1:2:3]/app", "is not a valid address"),
        ("[::ffff:102:304]/app", "IPv4-mapped IPv6 addresses are refused"),
        // The C resolver reads these as 10.0.0.5 or 127.0.0.1 (inet_aton); a rule naming the
        // address would not cover them.
        ("10.0.0.05:5000/app", "four decimal numbers"),
        ("10.5:5000/app", "four decimal numbers"),
        ("0xa.0.0.5:5000/app", "four decimal numbers"),
        ("10.0.0.0x5:5000/app", "four decimal numbers"),
        ("127.1/app", "four decimal numbers"),
        ("2130706433:5000/app", "four decimal numbers"),
        ("10.0.0.256:5000/app", "four decimal numbers"),
        ("1.2.3.4.5/app", "four decimal numbers"),
        ("localhost:05000/app", "without leading zeros"),
        ("localhost:0/app", "without leading zeros"),
        ("localhost:65536/app", "between 1 and 65535"),
        ("localhost:99999999999999999999/app", "between 1 and 65535"),
        // Only the capital makes `Foo` a host; lower-cased it would be Docker Hub's `foo/bar`.
        ("Foo/bar", "read as a Docker Hub namespace once lower-cased"),
        ("Foo:443/bar", "read as a Docker Hub namespace once lower-cased"),
    ];

    /// Every spelling of one registry host and the canonical name it must come out as.
    #[rustfmt::skip]
    const HOST_SPELLINGS: &[(&str, &str)] = &[
        ("LOCALHOST:5000/acme/api", "localhost:5000/acme/api"),
        ("LocalHost/acme/api", "localhost/acme/api"),
        ("GHCR.IO/acme/api", "ghcr.io/acme/api"),
        ("ghcr.io:443/acme/api", "ghcr.io/acme/api"),
        ("GHCR.IO:443/acme/api", "ghcr.io/acme/api"),
        ("ghcr.io:8443/acme/api", "ghcr.io:8443/acme/api"),
        ("registry-1.docker.io/acme/api", "docker.io/acme/api"),
        ("index.docker.io/acme/api", "docker.io/acme/api"),
        ("Docker.IO/acme/api", "docker.io/acme/api"),
        ("docker.io:443/acme/api", "docker.io/acme/api"),
        ("REGISTRY-1.DOCKER.IO:443/nginx", "docker.io/library/nginx"),
        ("acme/api", "docker.io/acme/api"),
        // A port other than 443 is another registry, even on a Docker Hub name.
        ("docker.io:5000/acme/api", "docker.io:5000/acme/api"),
        ("[0:0:0:0:0:0:0:1]:5000/acme/api", "[::1]:5000/acme/api"),
        ("[FD00:0::1]/acme/api", "[fd00::1]/acme/api"),
        ("[::1]:443/acme/api", "[::1]/acme/api"),
        ("[::102:304]/acme/api", "[::102:304]/acme/api"),
        ("10.0.0.5:5000/acme/api", "10.0.0.5:5000/acme/api"),
        ("0.0.0.0:443/acme/api", "0.0.0.0/acme/api"),
        // A number inside a name is no address.
        ("registry.10.example.com/acme/api", "registry.10.example.com/acme/api"),
        ("0xcafe.example.com/acme/api", "0xcafe.example.com/acme/api"),
    ];

    #[test]
    fn accepts_and_normalises_real_world_references() {
        for &(input, registry, repository, tag, has_digest, canonical) in ACCEPTED {
            let input = expand(input);
            let reference = ImageReference::parse(&input)
                .unwrap_or_else(|error| panic!("{input:?} should parse: {error}"));
            assert_eq!(reference.registry(), registry, "registry of {input:?}");
            assert_eq!(
                reference.repository(),
                repository,
                "repository of {input:?}"
            );
            assert_eq!(reference.name(), format!("{registry}/{repository}"));
            assert_eq!(reference.tag(), tag, "tag of {input:?}");
            assert_eq!(
                reference.digest().map(Digest::hex),
                has_digest.then_some(HEX),
                "digest of {input:?}"
            );
            assert_eq!(
                reference.to_string(),
                expand(canonical),
                "display of {input:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_references_with_a_specific_reason() {
        for &(input, fragment) in REJECTED {
            let input = expand(input);
            let fragment = expand(fragment);
            match ImageReference::parse(&input) {
                Ok(reference) => panic!("{input:?} should be rejected, parsed as {reference}"),
                Err(error) => {
                    let message = error.to_string();
                    assert!(
                        message.contains(&fragment),
                        "{input:?}: expected {fragment:?} in {message:?}"
                    );
                    assert!(!message.contains('\n'), "{input:?}: multi-line {message:?}");
                }
            }
        }
    }

    #[test]
    fn every_spelling_of_a_host_has_one_canonical_name() {
        for &(input, canonical) in HOST_SPELLINGS {
            let reference = ImageReference::parse(input)
                .unwrap_or_else(|error| panic!("{input:?} should parse: {error}"));
            assert_eq!(reference.name(), canonical, "name of {input:?}");
            let registry = canonical
                .split_once('/')
                .map_or("", |(registry, _)| registry);
            let written = input.split_once('/').map_or("", |(registry, _)| registry);
            if !written.is_empty() && names_a_registry(written) {
                assert_eq!(
                    canonical_registry(written).as_deref(),
                    Ok(registry),
                    "canonical_registry({written:?})"
                );
            }
        }
    }

    #[test]
    fn canonical_registry_refuses_what_is_not_one_host() {
        for (registry, fragment) in [
            ("", "host name is empty"),
            ("ghcr.io/acme", "labels of letters"),
            ("ghcr.io:", "one or more digits"),
            ("ghcr.io:+443", "one or more digits"),
            ("ghcr.io:0443", "without leading zeros"),
            ("ghcr.io:65536", "between 1 and 65535"),
            ("*.io", "labels of letters"),
            ("Foo", "Docker Hub namespace"),
            ("foo", "Docker Hub namespace"),
        ] {
            let error = canonical_registry(registry).expect_err(registry);
            assert!(
                error.to_string().contains(fragment),
                "{registry:?}: {error}"
            );
        }
        let long = format!("{}.io", "a".repeat(1000));
        let error = canonical_registry(&long).expect_err("too long");
        assert!(error.to_string().len() < 400, "must not echo the input");
    }

    #[test]
    fn table_is_large_enough_to_be_meaningful() {
        assert!(ACCEPTED.len() + REJECTED.len() >= 40);
    }

    #[test]
    fn rejects_length_limits_at_their_boundaries() {
        let longest_repository = format!("ghcr.io/{}", "a".repeat(MAX_REPOSITORY_LENGTH));
        assert!(ImageReference::parse(&longest_repository).is_ok());
        let error = ImageReference::parse(&format!("{longest_repository}b")).unwrap_err();
        assert!(error
            .to_string()
            .contains("256 characters long; the limit is 255"));

        // The library/ prefix counts, as in distribution.
        let official = "a".repeat(MAX_REPOSITORY_LENGTH - OFFICIAL_IMAGES_NAMESPACE.len() + 1);
        assert!(matches!(
            ImageReference::parse(&official),
            Err(ImageReferenceError::RepositoryTooLong { length: 256, .. })
        ));

        let longest_tag = format!("nginx:{}", "t".repeat(MAX_TAG_LENGTH));
        assert!(ImageReference::parse(&longest_tag).is_ok());
        let error = ImageReference::parse(&format!("{longest_tag}t")).unwrap_err();
        assert!(error
            .to_string()
            .contains("tag is 129 characters long; the limit is 128"));

        let huge = "a".repeat(MAX_INPUT_BYTES + 1);
        let error = ImageReference::parse(&huge).unwrap_err();
        assert_eq!(error, ImageReferenceError::InputTooLong { length: 4097 });
        assert!(error.to_string().len() < 100, "must not echo the input");
    }

    #[test]
    fn api_host_maps_only_docker_hub() {
        let hub = ImageReference::parse("nginx").unwrap();
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        let legacy = ImageReference::parse("index.docker.io/library/nginx").unwrap();
        assert_eq!(legacy.api_host(), "registry-1.docker.io");
        let api = ImageReference::parse("registry-1.docker.io/library/nginx").unwrap();
        assert_eq!(
            (api.registry(), api.api_host()),
            ("docker.io", "registry-1.docker.io")
        );
        let ghcr = ImageReference::parse("ghcr.io/acme/api").unwrap();
        assert_eq!(ghcr.api_host(), "ghcr.io");
        let local = ImageReference::parse("localhost:5000/app").unwrap();
        assert_eq!(local.api_host(), "localhost:5000");
        assert_eq!(
            registry_api_host("registry-1.docker.io"),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn with_digest_pins_and_keeps_the_tag() {
        let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        let tagged = ImageReference::parse("ghcr.io/acme/api:v1").unwrap();
        let pinned = tagged.with_digest(digest.clone());
        assert_eq!(pinned.tag(), Some("v1"));
        assert_eq!(pinned.digest(), Some(&digest));
        assert_eq!(
            pinned.to_string(),
            format!("ghcr.io/acme/api:v1@sha256:{HEX}")
        );
        assert_eq!(tagged.digest(), None, "the original is unchanged");

        let other = Digest::of_bytes(b"other manifest");
        let repinned = pinned.with_digest(other.clone());
        assert_eq!(repinned.digest(), Some(&other));
    }

    #[test]
    fn digest_of_bytes_is_sha256() {
        let empty = Digest::of_bytes(b"");
        assert_eq!(
            empty.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(empty.hex().len(), 64);
        assert_eq!(Digest::parse(&empty.to_string()), Ok(empty.clone()));
        assert_eq!(empty.to_string().parse::<Digest>(), Ok(empty));
        assert_eq!(Digest::parse(""), Err(DigestError::Empty));
        assert_eq!(Digest::parse(HEX), Err(DigestError::MissingAlgorithm));
    }

    #[test]
    fn long_digest_algorithms_are_not_echoed_in_full() {
        let text = format!("{}:{HEX}", "x".repeat(1000));
        let message = Digest::parse(&text).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
    }

    /// xorshift64*: deterministic, so a failure reproduces, and needs no new dependency.
    struct Generator(u64);

    impl Generator {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    /// Parsing must never panic, errors must stay one line, and every accepted reference must
    /// print to a canonical form that parses back to itself.
    fn check_properties(input: &str) {
        match ImageReference::parse(input) {
            Ok(reference) => {
                let canonical = reference.to_string();
                let reparsed = ImageReference::parse(&canonical)
                    .unwrap_or_else(|error| panic!("{input:?} -> {canonical:?}: {error}"));
                assert_eq!(reparsed, reference, "{input:?} is not stable");
                assert_eq!(reparsed.to_string(), canonical);
            }
            Err(error) => {
                let message = error.to_string();
                assert!(!message.contains('\n'), "{input:?}: {message:?}");
                assert!(
                    message.starts_with("invalid image reference"),
                    "{message:?}"
                );
            }
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut generator = Generator(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let length = generator.below(80);
            let bytes: Vec<u8> = (0..length).map(|_| generator.next() as u8).collect();
            check_properties(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn never_panics_on_random_unicode() {
        let mut generator = Generator(0x0123_4567_89ab_cdef);
        for _ in 0..20_000 {
            let length = generator.below(60);
            let text: String = (0..length)
                .filter_map(|_| match generator.below(4) {
                    // Mostly characters from the grammar, so parsing gets past the first checks.
                    0 | 1 => Some(*generator.pick(&GRAMMAR_ALPHABET) as char),
                    2 => char::from_u32(generator.below(0x80) as u32),
                    _ => char::from_u32(generator.below(0x11_0000) as u32),
                })
                .collect();
            check_properties(&text);
        }
    }

    const GRAMMAR_ALPHABET: [u8; 22] = *b"aZ09._-/:@[]:::///@@sf";

    #[test]
    fn never_panics_on_mutated_real_references() {
        let mut generator = Generator(0xdead_beef_cafe_f00d);
        let seeds: Vec<String> = ACCEPTED
            .iter()
            .map(|row| expand(row.0))
            .chain(REJECTED.iter().map(|row| expand(row.0)))
            .collect();
        for _ in 0..30_000 {
            let mut text: Vec<char> = generator.pick(&seeds).chars().collect();
            for _ in 0..=generator.below(4) {
                let position = generator.below(text.len() + 1);
                let replacement = match generator.below(3) {
                    0 => *generator.pick(&GRAMMAR_ALPHABET) as char,
                    1 => char::from_u32(generator.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
                    _ => 'é',
                };
                match generator.below(3) {
                    0 => text.insert(position, replacement),
                    1 if position < text.len() => {
                        text.remove(position);
                    }
                    _ if position < text.len() => text[position] = replacement,
                    _ => text.push(replacement),
                }
            }
            check_properties(&text.into_iter().collect::<String>());
        }
        // Boundary-sized inputs, multi-byte characters straddling the byte limit included.
        for filler in ["a", "é", "\u{10ffff}", "/", ":"] {
            for extra in 0..4 {
                let text = filler.repeat(MAX_INPUT_BYTES / filler.len() + extra);
                check_properties(&text);
            }
        }
    }
}
