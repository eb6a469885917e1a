//! A reader of Prometheus's text exposition format (version 0.0.4), the one the demo and its
//! tests share.
//!
//! Two ways in:
//! - [`samples`] reads the sample lines alone and skips what is no sample: what the stats page
//!   needs from the instance's own rendering.
//! - [`Exposition::parse`] reads strictly, for checking what an instance's `/metrics` serves:
//!   every sample line is `name{labels} value`, every metric family is declared by a `# TYPE`
//!   line before its samples and its samples come as one group, no series appears twice, and
//!   every histogram has, per label set, `_bucket` lines with an `le` label (cumulative, ending
//!   with `+Inf`), `_sum` and `_count` (equal to the `+Inf` bucket).
//!
//! Both read each sample line the same way, every part checked.

use std::collections::{BTreeMap, HashSet};

/// A metric family's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `summary`.
    Summary,
    /// `untyped`.
    Untyped,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`x_bucket` for a bucket of histogram `x`).
    pub name: String,
    /// Its labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of the label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// The sample lines of `text`, in order; comments, blank lines and lines that are no sample
/// are skipped, and nothing else is checked.
pub fn samples(text: &str) -> impl Iterator<Item = Sample> + '_ {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| sample(line).ok())
}

/// A metric family: its type and samples, in order.
#[derive(Debug, Clone)]
pub struct Family {
    /// The type its `# TYPE` line declared.
    pub kind: Kind,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// A whole exposition, read strictly.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// The families by name.
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// Reads `text`.
    ///
    /// # Errors
    /// The first departure from the format, with its line number and the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut exposition = Self::default();
        let mut open: Option<String> = None;
        let mut series = HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let fail = |why: &str| format!("line {}: {why}: {line:?}", index + 1);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.split_whitespace().collect();
                match words.as_slice() {
                    ["TYPE", name, kind] => {
                        check_metric_name(name).map_err(|why| fail(&why))?;
                        if exposition.families.contains_key(*name) {
                            return Err(fail("a second TYPE line for the family"));
                        }
                        open = Some((*name).to_owned());
                        let family = Family {
                            kind: kind_named(kind).ok_or_else(|| fail("unknown type"))?,
                            samples: Vec::new(),
                        };
                        exposition.families.insert((*name).to_owned(), family);
                    }
                    ["TYPE", ..] => return Err(fail("a TYPE line takes a name and a type")),
                    ["HELP", name, ..] => {
                        check_metric_name(name).map_err(|why| fail(&why))?;
                    }
                    _ => {}
                }
                continue;
            }
            let sample = sample(line).map_err(|why| fail(&why))?;
            let family = open
                .as_deref()
                .filter(|family| belongs(&sample.name, family, &exposition.families[*family]))
                .ok_or_else(|| {
                    fail("a sample outside the group of the family its TYPE line declared")
                })?;
            if !series.insert((sample.name.clone(), sample.labels.clone())) {
                return Err(fail("the same series twice"));
            }
            let family = exposition
                .families
                .get_mut(family)
                .ok_or_else(|| fail("no family"))?;
            family.samples.push(sample);
        }
        for (name, family) in &exposition.families {
            if family.samples.is_empty() {
                return Err(format!("family {name} has a TYPE line and no sample"));
            }
            match family.kind {
                Kind::Histogram => check_histogram(name, family)?,
                Kind::Counter => {
                    if let Some(sample) = family
                        .samples
                        .iter()
                        .find(|s| s.value.is_nan() || s.value < 0.0)
                    {
                        return Err(format!("counter {name} is negative: {sample:?}"));
                    }
                }
                _ => {}
            }
        }
        Ok(exposition)
    }

    /// The kind of family `name`, if there is one.
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.families.get(name).map(|family| family.kind)
    }

    /// The sum of the samples named `name` (of any family) whose labels include `labels`; zero
    /// when there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels).map(|sample| sample.value).sum()
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.families
            .values()
            .flat_map(|family| &family.samples)
            .filter(move |sample| {
                sample.name == name
                    && labels.iter().all(|(key, value)| {
                        sample.labels.get(*key).map(String::as_str) == Some(*value)
                    })
            })
    }
}

fn kind_named(kind: &str) -> Option<Kind> {
    Some(match kind {
        "counter" => Kind::Counter,
        "gauge" => Kind::Gauge,
        "histogram" => Kind::Histogram,
        "summary" => Kind::Summary,
        "untyped" => Kind::Untyped,
        _ => return None,
    })
}

/// Whether a sample named `name` is one of `family`'s.
fn belongs(name: &str, family_name: &str, family: &Family) -> bool {
    let suffixes: &[&str] = match family.kind {
        Kind::Histogram => &["_bucket", "_sum", "_count"],
        Kind::Summary => &["", "_sum", "_count"],
        Kind::Counter | Kind::Gauge | Kind::Untyped => &[""],
    };
    name.strip_prefix(family_name)
        .is_some_and(|suffix| suffixes.contains(&suffix))
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("{name:?} is no metric name"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__") {
        Ok(())
    } else {
        Err(format!("{name:?} is no label name"))
    }
}

/// `name{label="value",...} value [timestamp]`, every part checked.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let (name, mut rest) = line.split_at(name_end);
    check_metric_name(name)?;
    let mut labels = BTreeMap::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = inside;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"").ok_or("a label without =\"value\"")?;
            check_label_name(key)?;
            let (value, after) = label_value(after)?;
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            rest = match after.strip_prefix(',') {
                Some(next) => next,
                None if after.starts_with('}') => after,
                None => return Err("labels not separated by commas".to_owned()),
            };
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("no single space before the value")?;
    let mut parts = rest.split(' ');
    let value = parts.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => value
            .parse()
            .map_err(|_| format!("{value:?} is no number"))?,
    };
    if let Some(timestamp) = parts.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("{timestamp:?} is no timestamp"))?;
    }
    if parts.next().is_some() {
        return Err("more after the timestamp".to_owned());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped (only `\\`, `\"` and `\n` are escapes),
/// and what follows the quote.
fn label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[at + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => value.push('\n'),
                Some(c @ ('\\' | '"')) => value.push(c),
                other => return Err(format!("a bad escape \\{other:?} in a label value")),
            },
            '\n' => return Err("a raw line break in a label value".to_owned()),
            c => value.push(c),
        }
    }
    Err("an unterminated label value".to_owned())
}

/// Per label set: buckets with `le`, cumulative, ending with `+Inf`, equal to `_count`; a
/// `_sum`; `le` nowhere else.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    #[derive(Default)]
    struct Series {
        buckets: Vec<(f64, f64)>,
        sum: Option<f64>,
        count: Option<f64>,
    }
    let mut by_labels: BTreeMap<BTreeMap<String, String>, Series> = BTreeMap::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        let le = labels.remove("le");
        let series = by_labels.entry(labels).or_default();
        let suffix = &sample.name[name.len()..];
        match (suffix, le) {
            ("_bucket", Some(le)) => {
                let bound = match le.as_str() {
                    "+Inf" => f64::INFINITY,
                    _ => le
                        .parse()
                        .map_err(|_| format!("{name}: le={le:?} is no number"))?,
                };
                series.buckets.push((bound, sample.value));
            }
            ("_bucket", None) => return Err(format!("{name}: a bucket without le: {sample:?}")),
            ("_sum", None) => series.sum = Some(sample.value),
            ("_count", None) => series.count = Some(sample.value),
            _ => return Err(format!("{name}: le on a {suffix} line: {sample:?}")),
        }
    }
    for (labels, series) in by_labels {
        let what = format!("{name}{labels:?}");
        let mut buckets = series.buckets;
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.windows(2).any(|pair| pair[1].1 < pair[0].1) {
            return Err(format!("{what}: buckets not cumulative: {buckets:?}"));
        }
        let inf = buckets
            .last()
            .filter(|(bound, _)| bound.is_infinite())
            .ok_or_else(|| format!("{what}: no le=\"+Inf\" bucket"))?
            .1;
        let count = series.count.ok_or_else(|| format!("{what}: no _count"))?;
        series.sum.ok_or_else(|| format!("{what}: no _sum"))?;
        if count != inf {
            return Err(format!(
                "{what}: _count {count} is not the +Inf bucket's {inf}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP h A histogram.\n\
        # TYPE h histogram\n\
        h_bucket{op=\"a\",le=\"0.1\"} 1\n\
        h_bucket{op=\"a\",le=\"+Inf\"} 2\n\
        h_sum{op=\"a\"} 0.3\n\
        h_count{op=\"a\"} 2\n\
        \n\
        # TYPE c_total counter\n\
        c_total{path=\"/a/{id}\",say=\"\\\"hi\\\"\"} 3 1700000000000\n";

    #[test]
    fn a_well_formed_exposition_is_read() {
        let exposition = Exposition::parse(GOOD).expect("well formed");
        assert_eq!(exposition.kind("h"), Some(Kind::Histogram));
        assert_eq!(exposition.sum("h_count", &[("op", "a")]), 2.0);
        assert_eq!(exposition.sum("c_total", &[("path", "/a/{id}")]), 3.0);
        assert_eq!(exposition.sum("c_total", &[("say", "\"hi\"")]), 3.0);
    }

    #[test]
    fn samples_are_read_alone_and_what_is_no_sample_is_skipped() {
        let text = "x{route=\"/a/{id}\",note=\"say \\\"hi\\\", twice\\\\\"} 3\n\
                    y 4.5 1700000000000\n\
                    x{a=\"unterminated} 1\n\
                    novalue\n\
                    z_bucket{le=\"+Inf\"} 7\n";
        let read: Vec<_> = samples(text).collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].label("route"), Some("/a/{id}"));
        assert_eq!(read[0].label("note"), Some("say \"hi\", twice\\"));
        assert_eq!(read[0].value, 3.0);
        assert_eq!((read[1].name.as_str(), read[1].value), ("y", 4.5));
        assert_eq!(read[2].label("le"), Some("+Inf"));
    }

    #[test]
    fn departures_from_the_format_are_refused() {
        let broken = [
            ("a sample without a TYPE", "x 1\n"),
            (
                "a split group",
                "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
            ),
            ("two TYPE lines", "# TYPE a gauge\na 1\n# TYPE a gauge\n"),
            ("a missing value", "# TYPE a gauge\na{x=\"1\"}\n"),
            ("a bad value", "# TYPE a gauge\na one\n"),
            ("an unquoted label", "# TYPE a gauge\na{x=1} 1\n"),
            ("a bad label name", "# TYPE a gauge\na{1x=\"1\"} 1\n"),
            ("a bad escape", "# TYPE a gauge\na{x=\"\\t\"} 1\n"),
            ("the same series twice", "# TYPE a gauge\na 1\na 2\n"),
            ("a negative counter", "# TYPE a counter\na -1\n"),
            (
                "no +Inf bucket",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            ),
            (
                "no _sum",
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            ),
            (
                "a _count other than +Inf's",
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 2\n",
            ),
            (
                "buckets not cumulative",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            ),
            (
                "a summary's line in a histogram",
                "# TYPE h histogram\nh{quantile=\"0.5\"} 1\n",
            ),
        ];
        for (what, text) in broken {
            assert!(Exposition::parse(text).is_err(), "{what} was accepted");
        }
    }
}
