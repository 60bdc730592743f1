//! Prometheus text exposition, read as a load harness reads it: samples by name and labels,
//! and `histogram_quantile` over the difference of two scrapes, per label set.

use std::collections::BTreeMap;

/// One sample: its labels (without `le`) and value, with the bucket bound when it is one.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    le: Option<f64>,
    value: f64,
}

/// The samples of one `/metrics` scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: Vec<Sample>,
}

/// One histogram's change between two scrapes, for one label set.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramDelta {
    /// The labels of the series (without `le`).
    pub labels: BTreeMap<String, String>,
    /// Observations between the scrapes.
    pub count: f64,
    /// Sum of the observations between the scrapes.
    pub sum: f64,
    /// Cumulative counts by upper bound, ascending, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
}

impl Scrape {
    /// Parses the text format; lines it cannot read (comments, exemplars) are skipped.
    pub fn parse(text: &str) -> Scrape {
        Scrape {
            samples: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// Every label set of histogram `name`, as the change from `before` to this scrape.
    pub fn histograms_since(&self, before: &Scrape, name: &str) -> Vec<HistogramDelta> {
        let bucket_name = format!("{name}_bucket");
        let mut by_labels: BTreeMap<Vec<(String, String)>, HistogramDelta> = BTreeMap::new();
        for sample in self
            .samples
            .iter()
            .filter(|sample| sample.name == bucket_name)
        {
            let Some(bound) = sample.le else { continue };
            let key: Vec<_> = sample.labels.clone().into_iter().collect();
            let delta = sample.value - before.value_of(sample);
            by_labels
                .entry(key)
                .or_insert_with(|| HistogramDelta {
                    labels: sample.labels.clone(),
                    count: 0.0,
                    sum: 0.0,
                    buckets: Vec::new(),
                })
                .buckets
                .push((bound, delta));
        }
        for (key, histogram) in &mut by_labels {
            histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            histogram.count = histogram.buckets.last().map_or(0.0, |bucket| bucket.1);
            let labels: BTreeMap<String, String> = key.iter().cloned().collect();
            histogram.sum = self.labelled(&format!("{name}_sum"), &labels)
                - before.labelled(&format!("{name}_sum"), &labels);
        }
        by_labels
            .into_values()
            .filter(|histogram| histogram.count > 0.0)
            .collect()
    }

    /// The change of every series of counter `name` from `before`, by label set (non-zero ones).
    pub fn counters_since(
        &self,
        before: &Scrape,
        name: &str,
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|sample| sample.name == name && sample.le.is_none())
            .map(|sample| {
                (
                    sample.labels.clone(),
                    sample.value - before.value_of(sample),
                )
            })
            .filter(|(_, delta)| *delta != 0.0)
            .collect()
    }

    /// The value of the series `name{labels}` (exactly those labels), 0 when absent.
    pub fn labelled(&self, name: &str, labels: &BTreeMap<String, String>) -> f64 {
        self.samples
            .iter()
            .find(|sample| sample.name == name && sample.le.is_none() && &sample.labels == labels)
            .map_or(0.0, |sample| sample.value)
    }

    /// The sum of every series of `name` whose labels include `matching`.
    pub fn sum_matching(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                matching
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
            })
            .map(|sample| sample.value)
            .sum()
    }

    fn value_of(&self, wanted: &Sample) -> f64 {
        self.samples
            .iter()
            .find(|sample| {
                sample.name == wanted.name
                    && sample.le == wanted.le
                    && sample.labels == wanted.labels
            })
            .map_or(0.0, |sample| sample.value)
    }
}

impl HistogramDelta {
    /// `histogram_quantile(q, …)`: linear within the bucket holding rank `q × count`; the
    /// highest finite bound when the rank falls in `+Inf`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let share = (rank - lower.1) / (cumulative - lower.1).max(f64::MIN_POSITIVE);
                return Some(lower.0 + (bound - lower.0) * share);
            }
            lower = (bound, cumulative);
        }
        None
    }

    /// The share of observations at or below `bound` (a bucket bound), when it is one.
    pub fn share_within(&self, bound: f64) -> Option<f64> {
        let (_, cumulative) = self.buckets.iter().find(|(le, _)| *le == bound)?;
        Some(cumulative / self.count)
    }
}

/// `name{a="x",le="0.1"} 3` → a sample; `None` for comments and what it cannot read.
fn parse_line(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], line[close + 1..].trim())
        }
        None => line.split_once(' ')?,
    };
    let value: f64 = value.split_whitespace().next()?.parse().ok()?;
    let (name, mut labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, BTreeMap::new()),
    };
    let le = match labels.remove("le") {
        Some(bound) if bound == "+Inf" => Some(f64::INFINITY),
        Some(bound) => Some(bound.parse().ok()?),
        None => None,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        le,
        value,
    })
}

/// `a="x",b="y \"z\""` → labels (escapes `\"`, `\\` and `\n` undone).
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (index, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break index,
                other => value.push(other),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP h a histogram\n\
        h_bucket{name=\"a\",le=\"0.005\"} 1\nh_bucket{name=\"a\",le=\"0.025\"} 1\n\
        h_bucket{name=\"a\",le=\"+Inf\"} 1\nh_sum{name=\"a\"} 0.001\nh_count{name=\"a\"} 1\n";
    const AFTER: &str = "h_bucket{name=\"a\",le=\"0.005\"} 51\nh_bucket{name=\"a\",le=\"0.025\"} 99\n\
        h_bucket{name=\"a\",le=\"+Inf\"} 101\nh_sum{name=\"a\"} 0.5\nh_count{name=\"a\"} 101\n\
        h_bucket{name=\"b \\\"q\\\"\",le=\"0.005\"} 0\nh_bucket{name=\"b \\\"q\\\"\",le=\"+Inf\"} 0\n";

    #[test]
    fn quantiles_are_taken_over_the_change_per_label_set() {
        let histograms = Scrape::parse(AFTER).histograms_since(&Scrape::parse(BEFORE), "h");
        assert_eq!(histograms.len(), 1, "{histograms:?}");
        let a = &histograms[0];
        assert_eq!(a.labels["name"], "a");
        assert_eq!(a.count, 100.0);
        assert!((a.sum - 0.499).abs() < 1e-9, "{}", a.sum);
        // Rank 50 of 100: the 50th of the 50 new observations in (0, 5 ms].
        assert!((a.quantile(0.5).unwrap() - 0.005).abs() < 1e-9);
        // Rank 75: halfway through the 48 in (5, 25 ms].
        let p75 = a.quantile(0.75).unwrap();
        assert!(p75 > 0.005 && p75 < 0.025, "{p75}");
        // Rank 99.5 falls in +Inf: the highest finite bound.
        assert_eq!(a.quantile(0.995), Some(0.025));
        assert_eq!(a.share_within(0.005), Some(0.5));
    }

    #[test]
    fn escaped_labels_and_unlabelled_samples_are_read() {
        let scrape = Scrape::parse(AFTER);
        let labels = BTreeMap::from([("name".to_owned(), "b \"q\"".to_owned())]);
        assert!(scrape.samples.iter().any(|sample| sample.labels == labels));
        let counted = scrape.counters_since(&Scrape::parse(BEFORE), "h_count");
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].1, 100.0);
        let plain = Scrape::parse("up 1\nbroken{ 2\n");
        assert_eq!(plain.sum_matching("up", &[]), 1.0);
        assert_eq!(plain.samples.len(), 1);
    }
}
