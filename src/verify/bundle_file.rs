//! Reading bundles from bytes: one JSON bundle, JSON Lines with several, or the
//! `{"bundle": …}` wrapper GitHub's attestations API and `gh attestation download` use.

use serde::Deserialize as _;
use sigstore_verify::types::Bundle;

/// A single bundle larger than this is refused; real attestation bundles are a few KiB.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;
/// A file of bundles larger than this is refused.
pub const MAX_BUNDLE_FILE_BYTES: usize = 16 * 1024 * 1024;
/// At most this many bundles are read from one file; the rest are not considered.
pub const MAX_BUNDLES_PER_FILE: usize = 100;

/// The media types of the Sigstore bundles read, which are also the artifact types of their
/// OCI referrers.
pub const BUNDLE_MEDIA_TYPES: &[&str] = &[
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];

/// One bundle as read, with where it came from in its file.
#[derive(Debug, Clone)]
pub struct ParsedBundle {
    /// 1-based position in the file.
    pub index: usize,
    /// 1-based line of the file the bundle starts on.
    pub line: usize,
    /// `sha256:<hex>` of the bundle's JSON text, so the evidence can be found again.
    pub digest: String,
    pub bundle: Bundle,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleReadError {
    #[error("bundle file is empty")]
    Empty,
    #[error("bundle file is {size} bytes, more than the {MAX_BUNDLE_FILE_BYTES} allowed")]
    FileTooLarge { size: usize },
    #[error("bundle file is not UTF-8 text; expected a Sigstore bundle in JSON")]
    NotText,
    #[error(
        "bundle {index} (line {line}) is {size} bytes, more than the {MAX_BUNDLE_BYTES} allowed"
    )]
    BundleTooLarge {
        index: usize,
        line: usize,
        size: usize,
    },
    #[error("bundle {index} (line {line}) is not valid JSON ({reason}){hint}")]
    NotJson {
        index: usize,
        line: usize,
        reason: String,
        hint: &'static str,
    },
    #[error("bundle {index} (line {line}) has unknown media type {media_type:?}; supported: {}", BUNDLE_MEDIA_TYPES.join(", "))]
    UnknownMediaType {
        index: usize,
        line: usize,
        media_type: String,
    },
    #[error("bundle {index} (line {line}) is not a Sigstore bundle: {reason}")]
    NotABundle {
        index: usize,
        line: usize,
        reason: String,
    },
}

/// Reads every bundle in `bytes`. Fails as a whole on the first unreadable bundle, so that
/// nothing is silently dropped from what the user handed in.
pub fn read_bundles(bytes: &[u8]) -> Result<Vec<ParsedBundle>, BundleReadError> {
    if bytes.len() > MAX_BUNDLE_FILE_BYTES {
        return Err(BundleReadError::FileTooLarge { size: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| BundleReadError::NotText)?;
    if text.trim().is_empty() {
        return Err(BundleReadError::Empty);
    }
    // A whole-file JSON document (possibly pretty-printed over many lines) is one bundle;
    // otherwise the file is JSON Lines.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(vec![parse_one(text, value, 1, first_content_line(text))?]);
    }
    let mut bundles = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if bundles.len() == MAX_BUNDLES_PER_FILE {
            break;
        }
        let index = bundles.len() + 1;
        let line_number = line_index + 1;
        let value = serde_json::from_str::<serde_json::Value>(line).map_err(|error| {
            BundleReadError::NotJson {
                index,
                line: line_number,
                reason: error.to_string(),
                hint: if error.is_eof() {
                    ": the bundle ends early; the file may be truncated"
                } else {
                    ": expected one JSON bundle per line"
                },
            }
        })?;
        bundles.push(parse_one(line, value, index, line_number)?);
    }
    Ok(bundles)
}

fn first_content_line(text: &str) -> usize {
    text.lines()
        .position(|line| !line.trim().is_empty())
        .map_or(1, |position| position + 1)
}

fn parse_one(
    text: &str,
    value: serde_json::Value,
    index: usize,
    line: usize,
) -> Result<ParsedBundle, BundleReadError> {
    if text.len() > MAX_BUNDLE_BYTES {
        return Err(BundleReadError::BundleTooLarge {
            index,
            line,
            size: text.len(),
        });
    }
    let not_a_bundle = |reason: String| BundleReadError::NotABundle {
        index,
        line,
        reason,
    };
    let value = match value {
        // GitHub's attestations API and `gh attestation download` wrap the bundle.
        serde_json::Value::Object(mut object) if object.contains_key("bundle") => {
            object.remove("bundle").unwrap_or_default()
        }
        other => other,
    };
    let media_type = match value.get("mediaType") {
        Some(serde_json::Value::String(media_type)) => media_type.clone(),
        Some(_) => return Err(not_a_bundle("mediaType is not a string".into())),
        None => return Err(not_a_bundle(
            "no mediaType field; expected a Sigstore bundle (application/vnd.dev.sigstore.bundle…)"
                .into(),
        )),
    };
    if !BUNDLE_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(BundleReadError::UnknownMediaType {
            index,
            line,
            media_type,
        });
    }
    // From the tree already parsed: writing it out as text and parsing that again (what
    // `Bundle::from_json` would need) doubled the JSON work of every bundle read.
    let bundle = Bundle::deserialize(value).map_err(|error| not_a_bundle(error.to_string()))?;
    Ok(ParsedBundle {
        index,
        line,
        digest: format!("sha256:{}", crate::verify::sha256_hex(text.as_bytes())),
        bundle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_BUNDLE: &str = include_str!(
        "../../tests/data/bundles/public-good/reusable-workflow-attestation.sigstore.json"
    );

    fn one_line(json: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(json).unwrap()).unwrap()
    }

    /// Bundles are built from the JSON tree read to find them; the result must be what the
    /// library's own parser makes of the same text, for every bundle format we hold.
    #[test]
    fn a_bundle_read_equals_the_librarys_parse_of_its_text() {
        let real_bundles = [
            REAL_BUNDLE,
            include_str!("../../tests/data/bundles/public-good/sigstore-js-2.1.0-bundle-v0.1.json"),
            include_str!("../../tests/data/bundles/public-good/sigstore-js-2.1.0-bundle.json"),
            include_str!(
                "../../tests/data/bundles/github/github_provenance_demo-0.0.12-py3-none-any-bundle.json"
            ),
        ];
        for text in real_bundles {
            let read = read_bundles(text.as_bytes()).unwrap().remove(0).bundle;
            assert_eq!(read, Bundle::from_json(text).unwrap());
        }
    }

    #[test]
    fn a_pretty_printed_bundle_is_one_bundle() {
        let bundles = read_bundles(REAL_BUNDLE.as_bytes()).unwrap();
        assert_eq!(bundles.len(), 1);
        assert_eq!(bundles[0].index, 1);
        assert!(bundles[0].digest.starts_with("sha256:"));
    }

    #[test]
    fn json_lines_yield_each_bundle_with_its_line() {
        let line = one_line(REAL_BUNDLE);
        let text = format!("{line}\n\n{line}\n");
        let bundles = read_bundles(text.as_bytes()).unwrap();
        assert_eq!(bundles.len(), 2);
        assert_eq!((bundles[0].line, bundles[1].line), (1, 3));
    }

    #[test]
    fn the_github_api_wrapper_is_unwrapped() {
        let text = format!(r#"{{"bundle": {REAL_BUNDLE}, "repository_id": 1}}"#);
        assert_eq!(read_bundles(text.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn bad_input_is_named() {
        let line = one_line(REAL_BUNDLE);
        let truncated = &line[..line.len() / 2];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "bundle file is empty"),
            (b"  \n".to_vec(), "bundle file is empty"),
            (vec![0xff, 0xfe, 0x00], "not UTF-8"),
            (
                b"hello world".to_vec(),
                "bundle 1 (line 1) is not valid JSON",
            ),
            (truncated.as_bytes().to_vec(), "may be truncated"),
            (
                format!("{line}\n{truncated}").into_bytes(),
                "bundle 2 (line 2) is not valid JSON",
            ),
            (
                br#"{"mediaType": "application/x-foo"}"#.to_vec(),
                "unknown media type \"application/x-foo\"",
            ),
            (br#"{"a": 1}"#.to_vec(), "no mediaType field"),
            (br#"[1, 2]"#.to_vec(), "no mediaType field"),
            (
                br#"{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}"#.to_vec(),
                "is not a Sigstore bundle",
            ),
        ];
        for (input, expected) in cases {
            let error = read_bundles(&input).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![b' '; MAX_BUNDLE_FILE_BYTES + 1];
        assert!(matches!(
            read_bundles(&big),
            Err(BundleReadError::FileTooLarge { .. })
        ));
    }

    #[test]
    fn both_spellings_of_the_v0_3_media_type_are_read() {
        let alternative = REAL_BUNDLE.replace(
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            "application/vnd.dev.sigstore.bundle+json;version=0.3",
        );
        assert_ne!(alternative, REAL_BUNDLE);
        assert_eq!(read_bundles(alternative.as_bytes()).unwrap().len(), 1);
    }
}
