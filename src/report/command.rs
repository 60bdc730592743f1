//! The `report` command: arguments, reading records from files or stdin, printing.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use jiff::{SignedDuration, Timestamp};

use super::{Limits, Summariser, Window, MAX_LINE_BYTES};

#[derive(Debug, Args)]
#[command(after_help = "\
Reads decision records (the JSON lines `serve` writes to stdout) from FILEs or standard input;
`kubectl logs --prefix` and CRI log lines are read too. Lines that are not decision records are
counted and reported, never fatal.

Pass rate: verified images / judged images. Exempt images are not judged; images admitted
without proof (unmatchedImages: allow, warn, observe, break-glass) are judged and not passed;
dry runs are only counted.

Exit status: 0 the report was printed (whatever the records say); 2 bad usage or an unreadable
file.")]
pub struct ReportArgs {
    /// Files of decision records (JSON Lines); `-` or none: standard input.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Only records at or after this time: RFC 3339 (2026-11-28T00:00:00Z) or an age before
    /// now (7d, 24h, 1d12h).
    #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
    since: Option<TimeBound>,
    /// Only records before this time: RFC 3339 or an age before now.
    #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
    until: Option<TimeBound>,
    /// Reasons listed at most.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    top: u16,
    #[arg(long, value_enum, default_value_t = ReportOutput::Text)]
    output: ReportOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportOutput {
    Text,
    Json,
}

/// A window bound as given: a time, or an age counted back from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeBound {
    At(Timestamp),
    Ago(SignedDuration),
}

impl TimeBound {
    fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            TimeBound::At(time) => time,
            // At most ten years back (MaxAge's limit): never out of jiff's range.
            TimeBound::Ago(age) => now.checked_sub(age).unwrap_or(Timestamp::MIN),
        }
    }
}

fn parse_time_bound(text: &str) -> Result<TimeBound, String> {
    if let Ok(time) = text.parse::<Timestamp>() {
        return Ok(TimeBound::At(time));
    }
    crate::policy::MaxAge::parse(text)
        .map(|age| TimeBound::Ago(age.as_signed_duration()))
        .map_err(|_| {
            format!("{text:?} is neither an RFC 3339 time (2026-11-28T00:00:00Z) nor an age (7d, 24h, 1d12h)")
        })
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write the report: {0}")]
    Write(#[source] std::io::Error),
}

/// Runs `report`: 0 when the report was printed.
pub fn command(args: &ReportArgs) -> Result<ExitCode, ReportError> {
    let now = Timestamp::now();
    let window = Window {
        since: args.since.map(|bound| bound.resolve(now)),
        until: args.until.map(|bound| bound.resolve(now)),
    };
    let mut summariser = Summariser::new(window, Limits::default());
    let stdin_only = [PathBuf::from("-")];
    let files = if args.files.is_empty() {
        &stdin_only[..]
    } else {
        &args.files[..]
    };
    for path in files {
        let shown = path.display().to_string();
        let read_error = |source| ReportError::Read {
            path: shown.clone(),
            source,
        };
        if shown == "-" {
            read_lines(std::io::stdin().lock(), &mut summariser).map_err(read_error)?;
        } else {
            let file = std::fs::File::open(path).map_err(read_error)?;
            read_lines(std::io::BufReader::new(file), &mut summariser).map_err(read_error)?;
        }
    }
    let summary = summariser.finish(usize::from(args.top));
    let mut out = std::io::stdout().lock();
    match args.output {
        ReportOutput::Json => serde_json::to_writer(&mut out, &summary)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        ReportOutput::Text => out.write_all(super::text::render(&summary).as_bytes()),
    }
    .and_then(|()| out.flush())
    .map_err(ReportError::Write)?;
    Ok(ExitCode::SUCCESS)
}

/// Feeds each line of `reader` to `summariser`, keeping at most [`MAX_LINE_BYTES`] of a line
/// in memory: a longer line is skipped to its end and counted as too long.
fn read_lines(mut reader: impl BufRead, summariser: &mut Summariser) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            break;
        }
        let (chunk, line_ends) = match buffer.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&buffer[..end], true),
            None => (buffer, false),
        };
        if !too_long && line.len() + chunk.len() <= MAX_LINE_BYTES {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        let consumed = chunk.len() + usize::from(line_ends);
        reader.consume(consumed);
        if line_ends {
            finish_line(&mut line, &mut too_long, summariser);
        }
    }
    finish_line(&mut line, &mut too_long, summariser);
    Ok(())
}

fn finish_line(line: &mut Vec<u8>, too_long: &mut bool, summariser: &mut Summariser) {
    if std::mem::take(too_long) {
        summariser.line_too_long();
    } else if !line.is_empty() {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        summariser.line(text);
    }
    line.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8]) -> super::super::LineCounts {
        let mut summariser = Summariser::new(Window::default(), Limits::default());
        // A one-byte buffer: every line arrives in pieces, as from a slow pipe.
        read_lines(std::io::BufReader::with_capacity(1, input), &mut summariser).unwrap();
        summariser.finish(10).lines
    }

    #[test]
    fn long_lines_are_counted_not_kept_and_reading_goes_on() {
        let record =
            br#"{"time":"2026-11-28T10:00:00Z","mode":"enforce","result":"denied","image":"a"}"#;
        let mut input = Vec::new();
        input.extend_from_slice(record);
        input.push(b'\n');
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 1));
        input.push(b'\n');
        input.extend_from_slice(record);
        // The last line has no line end.
        let counts = lines_of(&input);
        assert_eq!((counts.read, counts.records, counts.too_long), (3, 2, 1));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_read() {
        let mut input = vec![b' '; MAX_LINE_BYTES - 3];
        input.extend_from_slice(b"{}\r\n");
        let counts = lines_of(&input);
        // `{}` is JSON but no record; the `\r` of a CRLF file is not part of the line.
        assert_eq!(
            (counts.read, counts.not_records, counts.too_long),
            (1, 1, 0)
        );
        input.insert(0, b' ');
        assert_eq!(lines_of(&input).too_long, 1, "one byte more");
    }

    #[test]
    fn time_bounds_are_times_or_ages() {
        let now: Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
        let at = parse_time_bound("2026-11-01T00:00:00Z").unwrap();
        assert_eq!(at.resolve(now), "2026-11-01T00:00:00Z".parse().unwrap());
        let ago = parse_time_bound("1d12h").unwrap();
        assert_eq!(ago.resolve(now), "2026-11-26T22:00:00Z".parse().unwrap());
        for bad in ["yesterday", "-1d", "2026-11-28", "0s", ""] {
            assert!(parse_time_bound(bad).is_err(), "{bad:?}");
        }
    }
}
