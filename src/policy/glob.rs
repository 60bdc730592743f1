//! Path-style globs for image repositories, git refs and workflow paths.
//!
//! `*` and `?` never cross a `/`, so `ghcr.io/acme/*` covers `ghcr.io/acme/api` but not
//! `ghcr.io/acme/team/api`; `**` as a whole segment crosses segments (`ghcr.io/acme/**`).
//!
//! A [`Glob`] is checked but not compiled: globs are matched as a [`GlobList`], one
//! compiled matcher per list. A regex per glob cost about 14 KB each, so that a large
//! policy took hundreds of megabytes.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Serialize, Serializer};
use std::sync::Arc;

/// Why a glob pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// Nothing to match.
    #[error("empty pattern")]
    Empty,
    /// Inside a segment `**` would only mean `*`; refusing it keeps the pattern honest.
    #[error("`**` must be a whole path segment (e.g. `ghcr.io/acme/**`), not part of `{segment}`")]
    PartialRecursive {
        /// The offending segment.
        segment: String,
    },
    /// Rejected by the glob compiler (unclosed class or group, …).
    #[error("invalid glob: {0}")]
    Syntax(String),
}

/// A checked glob with `/` as the segment separator. Matching is case-sensitive, and done
/// by the [`GlobList`] it belongs to.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    glob: globset::Glob,
}

impl Glob {
    /// Compiles `pattern`: `*`, `?`, `[...]`, `{a,b}` stay within a segment, `**` crosses.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        Glob::compile(pattern, pattern)
    }

    /// Compiles `pattern` with its first segment taken literally: an image pattern's registry
    /// host, where `[::1]` is an IPv6 address and not a character class.
    pub(crate) fn with_literal_first_segment(pattern: &str) -> Result<Glob, GlobError> {
        let (first, rest) = pattern.split_once('/').unwrap_or((pattern, ""));
        let mut escaped = String::with_capacity(pattern.len() + 8);
        for character in first.chars() {
            if has_glob_syntax(character.encode_utf8(&mut [0; 4])) {
                escaped.push('\\');
            }
            escaped.push(character);
        }
        if pattern.contains('/') {
            escaped.push('/');
            escaped.push_str(rest);
        }
        Glob::compile(&escaped, pattern)
    }

    /// Compiles `matched`, remembering `written` as the pattern people see.
    fn compile(matched: &str, written: &str) -> Result<Glob, GlobError> {
        if written.is_empty() {
            return Err(GlobError::Empty);
        }
        if let Some(segment) = written
            .split('/')
            .find(|segment| segment.contains("**") && *segment != "**")
        {
            return Err(GlobError::PartialRecursive {
                segment: segment.to_string(),
            });
        }
        let glob = GlobBuilder::new(matched)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|error| GlobError::Syntax(error.kind().to_string()))?;
        Ok(Glob {
            pattern: written.to_string(),
            glob,
        })
    }

    /// The pattern as compiled: as written, but with an image host's glob characters escaped.
    pub(crate) fn matched_pattern(&self) -> &str {
        self.glob.glob()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern has any glob syntax at all.
    pub fn is_literal(&self) -> bool {
        !has_glob_syntax(&self.pattern)
    }
}

/// True when `text` contains characters that globs treat specially.
pub(crate) fn has_glob_syntax(text: &str) -> bool {
    text.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// Globs compiled together: one matcher for a rule's images, refs or workflows, or for the
/// exemptions. Dereferences to the globs, in the order written.
#[derive(Debug, Clone)]
pub struct GlobList {
    globs: Vec<Glob>,
    /// Shared by every list of the same globs (rules repeat refs and workflows).
    set: Arc<GlobSet>,
}

impl GlobList {
    /// Compiles `globs` into one matcher.
    pub fn new(globs: Vec<Glob>) -> Result<GlobList, GlobError> {
        let mut builder = GlobSetBuilder::new();
        for glob in &globs {
            builder.add(glob.glob.clone());
        }
        let set = builder
            .build()
            .map_err(|error| GlobError::Syntax(error.to_string()))?;
        Ok(GlobList {
            globs,
            set: Arc::new(set),
        })
    }

    /// A list of `globs` matched by `set`, which must have been compiled from globs with
    /// the same [`Glob::matched_pattern`]s, in the same order.
    pub(crate) fn sharing(globs: Vec<Glob>, set: Arc<GlobSet>) -> GlobList {
        GlobList { globs, set }
    }

    /// The compiled matcher, to share with lists of the same globs.
    pub(crate) fn shared_set(&self) -> Arc<GlobSet> {
        Arc::clone(&self.set)
    }

    /// Whether `candidate` matches any of the globs, each as a whole.
    pub fn is_match(&self, candidate: &str) -> bool {
        self.set.is_match(candidate)
    }
}

impl std::ops::Deref for GlobList {
    type Target = [Glob];

    fn deref(&self) -> &[Glob] {
        &self.globs
    }
}

impl PartialEq for GlobList {
    fn eq(&self, other: &GlobList) -> bool {
        self.globs == other.globs
    }
}

impl Eq for GlobList {}

impl Serialize for GlobList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.globs.serialize(serializer)
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Glob {}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles each pattern with `compile` and checks it against its candidate.
    fn assert_matches(
        cases: &[(&str, &str, bool)],
        compile: impl Fn(&str) -> Result<Glob, GlobError>,
    ) {
        for &(pattern, candidate, expected) in cases {
            let glob = compile(pattern).expect(pattern);
            assert_eq!(glob.as_str(), pattern);
            assert_eq!(
                GlobList::new(vec![glob])
                    .expect("compiles")
                    .is_match(candidate),
                expected,
                "{pattern} against {candidate}"
            );
        }
    }

    #[test]
    fn star_stays_within_a_segment_and_double_star_crosses() {
        let cases = [
            ("ghcr.io/acme/*", "ghcr.io/acme/api", true),
            ("ghcr.io/acme/*", "ghcr.io/acme/team/api", false),
            ("ghcr.io/acme/*", "ghcr.io/acme", false),
            ("ghcr.io/acme/**", "ghcr.io/acme/api", true),
            ("ghcr.io/acme/**", "ghcr.io/acme/team/api", true),
            ("ghcr.io/acme/**", "ghcr.io/acme", false),
            ("ghcr.io/acme/**", "ghcr.io/acmecorp/api", false),
            ("registry.k8s.io/**", "registry.k8s.io/pause", true),
            (
                "registry.k8s.io/**",
                "registry.k8s.io/sig-storage/csi-provisioner",
                true,
            ),
            ("registry.k8s.io/**", "evil.io/registry.k8s.io/pause", false),
            ("ghcr.io/*/api", "ghcr.io/acme/api", true),
            ("ghcr.io/*/api", "ghcr.io/acme/x/api", false),
            ("ghcr.io/**/api", "ghcr.io/acme/x/api", true),
            ("ghcr.io/acme/api-?", "ghcr.io/acme/api-1", true),
            ("ghcr.io/acme/api-?", "ghcr.io/acme/api-10", false),
            ("ghcr.io/acme/{api,web}", "ghcr.io/acme/web", true),
            ("ghcr.io/acme/api", "ghcr.io/acme/api", true),
            ("ghcr.io/acme/api", "ghcr.io/acme/API", false),
            ("localhost:5000/*", "localhost:5000/app", true),
            ("refs/tags/v*", "refs/tags/v1.2.3", true),
            ("refs/tags/v*", "refs/tags/release/v1", false),
            ("refs/tags/*", "refs/tags/v1", true),
            ("refs/tags/*", "refs/tags/a/b", false),
            ("refs/tags/**", "refs/tags/a/b", true),
            ("refs/heads/main", "refs/heads/main", true),
            ("refs/heads/main", "refs/heads/main2", false),
            ("refs/heads/release/*", "refs/heads/release/1.x", true),
            (
                ".github/workflows/*.yml",
                ".github/workflows/release.yml",
                true,
            ),
            (
                ".github/workflows/*.yml",
                ".github/workflows/x/release.yml",
                false,
            ),
        ];
        assert_matches(&cases, Glob::new);
    }

    #[test]
    fn refuses_malformed_patterns() {
        let cases = [
            ("", "empty pattern"),
            ("ghcr.io/acme**", "`**` must be a whole path segment"),
            ("ghcr.io/**x/api", "not part of `**x`"),
            (
                "ghcr.io/acme/[api",
                "invalid glob: unclosed character class",
            ),
            (
                "ghcr.io/acme/{api",
                "invalid glob: unclosed alternate group",
            ),
        ];
        for (pattern, fragment) in cases {
            let error = Glob::new(pattern).expect_err(pattern).to_string();
            assert!(error.contains(fragment), "{pattern}: {error}");
        }
    }

    #[test]
    fn a_literal_first_segment_is_matched_as_written() {
        let cases = [
            ("[::1]:5000/acme/*", "[::1]:5000/acme/api", true),
            ("[::1]:5000/acme/*", "1:5000/acme/api", false),
            ("[::1]:5000/acme/*", "[::1]:5000/acme/team/api", false),
            ("[fd00::1]/**", "[fd00::1]/a/b", true),
            ("ghcr.io/acme/**", "ghcr.io/acme/team/api", true),
            ("ghcr.io/acme/**", "ghcr.io/acmecorp/api", false),
        ];
        assert_matches(&cases, Glob::with_literal_first_segment);
        let star_host = list(&[Glob::with_literal_first_segment("*/acme/api").expect("compiles")]);
        assert!(star_host.is_match("*/acme/api"));
        assert!(!star_host.is_match("evil.example/acme/api"));
        // The plain constructor reads the brackets as a class: why hosts need the literal one.
        assert!(!list(&[Glob::new("[::1]:5000/acme/*").expect("compiles")])
            .is_match("[::1]:5000/acme/api"));
    }

    fn list(globs: &[Glob]) -> GlobList {
        GlobList::new(globs.to_vec()).expect("compiles")
    }

    #[test]
    fn a_list_matches_when_any_of_its_globs_does() {
        let globs = list(&[
            Glob::new("ghcr.io/acme/*").unwrap(),
            Glob::with_literal_first_segment("[::1]:5000/acme/**").unwrap(),
            Glob::new("quay.io/acme/api").unwrap(),
        ]);
        assert_eq!(globs.len(), 3);
        assert_eq!(globs[1].as_str(), "[::1]:5000/acme/**");
        for (candidate, expected) in [
            ("ghcr.io/acme/api", true),
            ("ghcr.io/acme/team/api", false),
            ("[::1]:5000/acme/team/api", true),
            ("quay.io/acme/api", true),
            ("quay.io/acme/web", false),
        ] {
            assert_eq!(globs.is_match(candidate), expected, "{candidate}");
        }
        assert!(!list(&[]).is_match("ghcr.io/acme/api"));
        assert_eq!(
            serde_json::to_value(&globs).unwrap(),
            serde_json::json!(["ghcr.io/acme/*", "[::1]:5000/acme/**", "quay.io/acme/api"])
        );
    }

    /// Patterns that take a backtracking matcher exponential time, or nest deep: the matcher
    /// (a finite automaton) answers them like any other, or the pattern is refused; never a
    /// hang, a stack overflow or a panic.
    #[test]
    fn catastrophic_patterns_are_matched_or_refused() {
        let segment = "a".repeat(255);
        let stars = list(&[Glob::new(&format!("ghcr.io/{}b", "*a".repeat(64))).unwrap()]);
        assert!(!stars.is_match(&format!("ghcr.io/{segment}")));
        assert!(stars.is_match(&format!("ghcr.io/{segment}b")));

        let recursive = list(&[Glob::new(&format!("ghcr.io/{}x", "**/".repeat(200))).unwrap()]);
        assert!(recursive.is_match(&format!("ghcr.io/{}x", "a/".repeat(300))));
        assert!(!recursive.is_match(&format!("ghcr.io/{}y", "a/".repeat(300))));

        let classes = list(&[Glob::new(&format!("ghcr.io/{}", "[a-z]".repeat(255))).unwrap()]);
        assert!(classes.is_match(&format!("ghcr.io/{segment}")));
        assert!(!classes.is_match(&format!("ghcr.io/{segment}a")));

        let alternatives = format!("ghcr.io/{}", "{a,b,c}".repeat(64));
        let alternatives = list(&[Glob::new(&alternatives).unwrap()]);
        assert!(alternatives.is_match(&format!("ghcr.io/{}", "abc".repeat(21) + "a")));

        let nested = format!("ghcr.io/{}a{}", "{a,".repeat(500), "}".repeat(500));
        let error = Glob::new(&nested).expect_err("nested groups").to_string();
        assert!(
            error.contains("alternate groups nested too deeply"),
            "{error}"
        );
    }

    #[test]
    fn knows_literal_patterns() {
        assert!(Glob::new("refs/heads/main").unwrap().is_literal());
        assert!(!Glob::new("refs/tags/*").unwrap().is_literal());
    }
}
