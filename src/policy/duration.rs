//! Durations written like `8h`, `30m` or `1h30m`: break-glass windows, and rules' `maxAge`
//! (which may also count days: `90d`).

use serde::{Serialize, Serializer};

/// The longest break-glass window a policy may allow: a forgotten annotation must not
/// switch the gate off for longer than a week.
pub const MAX_BREAK_GLASS: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not `<n>h<n>m<n>s`.
    #[error(
        "invalid duration `{0}`: expected hours, minutes and seconds such as 8h, 30m or 1h30m"
    )]
    Syntax(String),
    /// Zero.
    #[error("duration `{0}` must be positive")]
    NotPositive(String),
    /// Beyond [`MAX_BREAK_GLASS`].
    #[error("duration `{0}` is longer than the maximum of 7 days (168h)")]
    TooLong(String),
    /// Beyond [`MAX_AGE_LIMIT`].
    #[error("duration `{0}` is longer than the maximum of 3650 days (3650d)")]
    AgeTooLong(String),
}

/// The longest `maxAge` a rule may set: ten years, a bound that keeps every age arithmetic
/// far from overflow.
pub const MAX_AGE_LIMIT: std::time::Duration = std::time::Duration::from_secs(3650 * 24 * 3600);

const HOURS_MINUTES_SECONDS: [(char, u64); 3] = [('h', 3600), ('m', 60), ('s', 1)];
const DAYS_HOURS_MINUTES_SECONDS: [(char, u64); 4] =
    [('d', 24 * 3600), ('h', 3600), ('m', 60), ('s', 1)];

/// Parses `<n><unit>` parts in the order of `units`, each at most once (Go style, without
/// fractions), into a positive number of seconds; `None` on overflow.
fn parse_seconds(text: &str, units: &[(char, u64)]) -> Result<Option<u64>, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    let mut rest = text;
    let mut seconds: u64 = 0;
    let mut next_unit = 0;
    if rest.is_empty() {
        return Err(syntax());
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || digits > 12 {
            return Err(syntax());
        }
        let amount: u64 = rest[..digits].parse().map_err(|_| syntax())?;
        let unit = rest[digits..].chars().next().ok_or_else(syntax)?;
        let position = units[next_unit..]
            .iter()
            .position(|(symbol, _)| *symbol == unit)
            .ok_or_else(syntax)?;
        let factor = units[next_unit + position].1;
        next_unit += position + 1;
        let Some(total) = amount
            .checked_mul(factor)
            .and_then(|part| seconds.checked_add(part))
        else {
            return Ok(None);
        };
        seconds = total;
        rest = &rest[digits + unit.len_utf8()..];
    }
    if seconds == 0 {
        return Err(DurationError::NotPositive(text.to_string()));
    }
    Ok(Some(seconds))
}

/// [`parse_seconds`], refusing durations beyond `limit` with `too_long`.
fn parse_bounded(
    text: &str,
    units: &[(char, u64)],
    limit: std::time::Duration,
    too_long: fn(String) -> DurationError,
) -> Result<std::time::Duration, DurationError> {
    match parse_seconds(text, units)?.map(std::time::Duration::from_secs) {
        Some(duration) if duration <= limit => Ok(duration),
        _ => Err(too_long(text.to_string())),
    }
}

/// A positive duration of at most [`MAX_BREAK_GLASS`], in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BreakGlassDuration(std::time::Duration);

impl BreakGlassDuration {
    /// Parses `<n>h`, `<n>m`, `<n>s` parts in that order, each at most once (Go style,
    /// without fractions): `8h`, `30m`, `1h30m`, `90s`.
    pub fn parse(text: &str) -> Result<BreakGlassDuration, DurationError> {
        parse_bounded(
            text,
            &HOURS_MINUTES_SECONDS,
            MAX_BREAK_GLASS,
            DurationError::TooLong,
        )
        .map(BreakGlassDuration)
    }

    /// As a standard library duration.
    pub fn as_std(&self) -> std::time::Duration {
        self.0
    }

    /// As a jiff duration, to compare with timestamps.
    pub fn as_signed_duration(&self) -> jiff::SignedDuration {
        // At most a week in seconds: always fits an i64.
        jiff::SignedDuration::from_secs(i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX))
    }
}

impl std::fmt::Display for BreakGlassDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.0.as_secs();
        let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if seconds > 0 {
            write!(f, "{seconds}s")?;
        }
        Ok(())
    }
}

impl Serialize for BreakGlassDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A rule's `maxAge`: a positive duration of at most [`MAX_AGE_LIMIT`], in whole seconds,
/// written with days, hours, minutes and seconds (`90d`, `36h`, `1d12h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MaxAge(std::time::Duration);

impl MaxAge {
    /// Parses `<n>d`, `<n>h`, `<n>m`, `<n>s` parts in that order, each at most once.
    pub fn parse(text: &str) -> Result<MaxAge, DurationError> {
        parse_bounded(
            text,
            &DAYS_HOURS_MINUTES_SECONDS,
            MAX_AGE_LIMIT,
            DurationError::AgeTooLong,
        )
        .map(MaxAge)
    }

    /// As a jiff duration, to compare with timestamps.
    pub fn as_signed_duration(&self) -> jiff::SignedDuration {
        // At most ten years in seconds: always fits an i64.
        jiff::SignedDuration::from_secs(i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX))
    }
}

impl std::fmt::Display for MaxAge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.0.as_secs();
        let parts = [
            (total / 86400, 'd'),
            (total / 3600 % 24, 'h'),
            (total / 60 % 60, 'm'),
            (total % 60, 's'),
        ];
        for (amount, unit) in parts {
            if amount > 0 {
                write!(f, "{amount}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for MaxAge {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hours_minutes_seconds() {
        let cases = [
            ("8h", 8 * 3600, "8h"),
            ("30m", 1800, "30m"),
            ("1h30m", 5400, "1h30m"),
            ("90m", 5400, "1h30m"),
            ("45s", 45, "45s"),
            ("1h0m5s", 3605, "1h5s"),
            ("168h", 168 * 3600, "168h"),
        ];
        for (text, seconds, canonical) in cases {
            let duration = BreakGlassDuration::parse(text).expect(text);
            assert_eq!(duration.as_std().as_secs(), seconds, "{text}");
            assert_eq!(duration.to_string(), canonical, "{text}");
            assert_eq!(duration.as_signed_duration().as_secs(), seconds as i64);
        }
    }

    #[test]
    fn refuses_bad_durations() {
        let cases = [
            ("", "invalid duration"),
            ("8", "invalid duration"),
            ("h", "invalid duration"),
            ("8 h", "invalid duration"),
            ("1.5h", "invalid duration"),
            ("30m1h", "invalid duration"),
            ("1h1h", "invalid duration"),
            ("1d", "invalid duration"),
            ("-1h", "invalid duration"),
            ("PT8H", "invalid duration"),
            ("0h", "must be positive"),
            ("0m0s", "must be positive"),
            ("169h", "longer than the maximum of 7 days"),
            ("999999999999h", "longer than the maximum"),
            ("9999999999999h", "invalid duration"),
        ];
        for (text, fragment) in cases {
            let error = BreakGlassDuration::parse(text).expect_err(text).to_string();
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }

    #[test]
    fn max_ages_count_days_too() {
        let cases = [
            ("90d", 90 * 86400, "90d"),
            ("36h", 36 * 3600, "1d12h"),
            ("1d12h", 36 * 3600, "1d12h"),
            ("3650d", 3650 * 86400, "3650d"),
            ("90s", 90, "1m30s"),
        ];
        for (text, seconds, canonical) in cases {
            let age = MaxAge::parse(text).expect(text);
            assert_eq!(age.as_signed_duration().as_secs(), seconds, "{text}");
            assert_eq!(age.to_string(), canonical, "{text}");
        }
        let refused = [
            ("3651d", "longer than the maximum of 3650 days"),
            ("999999999999d", "longer than the maximum of 3650 days"),
            ("1h1d", "invalid duration"),
            ("0d", "must be positive"),
            ("1w", "invalid duration"),
        ];
        for (text, fragment) in refused {
            let error = MaxAge::parse(text).expect_err(text).to_string();
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }
}
