//! SECURITY.md's bad-input catalogue names the tests that cover each row (`path::test`).
//! Every named test must exist, and every kind of bad input the catalogue promises must have
//! a row, so that the table cannot rot when tests are renamed or removed.

use std::path::Path;

const SECURITY: &str = include_str!("../SECURITY.md");

/// Inputs the catalogue must always cover (words of the rows' first cells).
const REQUIRED_ROWS: [&str; 11] = [
    "malformed JSON",
    "truncated JSON",
    "wrong review kind or version",
    "oversized bodies",
    "thousands of containers",
    "10,000-character image reference",
    "unicode look-alike registry hosts",
    "garbage break-glass annotations",
    "catastrophic globs",
    "an index of 1,000 platforms",
    "a referrer chain pointing at itself",
];

struct Row {
    input: String,
    tests: Vec<String>,
}

/// The rows of the table in `markdown`'s "Bad input" section.
fn rows(markdown: &str) -> Vec<Row> {
    let section = markdown
        .split("\n## Bad input\n")
        .nth(1)
        .expect("a \"## Bad input\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with('|'))
        // The header and its separator.
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
            let tests = cells
                .last()
                .map(|cell| {
                    cell.split('`')
                        .skip(1)
                        .step_by(2)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Row {
                input: cells[0].trim().to_owned(),
                tests,
            }
        })
        .collect()
}

/// Why `test` (`path::…::name`) does not name a test function under `root`, if it does not.
fn missing(root: &Path, test: &str) -> Option<String> {
    let Some((path, rest)) = test.split_once("::") else {
        return Some(format!("{test}: not path::name"));
    };
    let name = rest.rsplit("::").next().unwrap_or(rest);
    let Ok(source) = std::fs::read_to_string(root.join(path)) else {
        return Some(format!("{test}: no file {path}"));
    };
    let Some(at) = source.find(&format!("fn {name}(")) else {
        return Some(format!("{test}: no fn {name} in {path}"));
    };
    let before = &source[..at];
    let attribute = before.rfind("#[test]").max(before.rfind("#[tokio::test"));
    // The attribute must belong to this function: no other function between them.
    match attribute {
        Some(attribute) if !before[attribute..].contains("fn ") => None,
        _ => Some(format!("{test}: {name} in {path} is not a test")),
    }
}

#[test]
fn every_test_the_catalogue_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows = rows(SECURITY);
    assert!(rows.len() >= REQUIRED_ROWS.len(), "{} rows", rows.len());
    let mut problems = Vec::new();
    for row in &rows {
        if row.tests.is_empty() {
            problems.push(format!("row {:?} names no test", row.input));
        }
        problems.extend(row.tests.iter().filter_map(|test| missing(root, test)));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_catalogue_has_a_row_for_every_promised_input() {
    let rows = rows(SECURITY);
    for required in REQUIRED_ROWS {
        assert!(
            rows.iter().any(|row| row.input.contains(required)),
            "no row for {required:?}"
        );
    }
}

#[test]
fn a_renamed_or_missing_test_is_reported() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = "\n## Bad input\n\n| input | what | test |\n| --- | --- | --- |\n\
        | a | b | `tests/security_catalogue.rs::a_renamed_or_missing_test_is_reported` |\n\
        | c | d | `tests/security_catalogue.rs::no_such_test`, `tests/nowhere.rs::x` |\n\
        | e | f | `tests/security_catalogue.rs::rows` |\n\
        | g | h | none |\n\n## Next\n| x | y | `z` |\n";
    let rows = rows(table);
    assert_eq!(rows.len(), 4);
    assert_eq!(missing(root, &rows[0].tests[0]), None);
    let problems: Vec<String> = rows[1..]
        .iter()
        .flat_map(|row| row.tests.iter().filter_map(|test| missing(root, test)))
        .collect();
    assert_eq!(
        problems,
        [
            "tests/security_catalogue.rs::no_such_test: no fn no_such_test in tests/security_catalogue.rs",
            "tests/nowhere.rs::x: no file tests/nowhere.rs",
            "tests/security_catalogue.rs::rows: rows in tests/security_catalogue.rs is not a test",
        ]
    );
    assert!(rows[3].tests.is_empty());
}
