//! The samples of Prometheus's text format read back, as `metrics-exporter-prometheus`
//! renders them: what the stats page needs, not a validator (the tests check the format
//! strictly, with a reader of their own).

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample<'a> {
    pub(crate) name: &'a str,
    labels: Vec<(&'a str, String)>,
    pub(crate) value: f64,
}

impl Sample<'_> {
    /// The value of the label `key`, if the sample has it.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// The sample lines of `text`; comments, blank lines and lines that are no sample are skipped.
pub(crate) fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(sample)
}

fn sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = inside;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let (value, after) = quoted(after)?;
            labels.push((key, value));
            rest = after;
        }
    }
    // A timestamp may follow the value.
    let value = number(rest.split_whitespace().next()?)?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                escaped => value.push(escaped),
            },
            c => value.push(c),
        }
    }
    None
}

fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_quotes_commas_and_braces_are_read_whole() {
        let text = "# TYPE x counter\n\
                    x{route=\"/a/{id}\",note=\"say \\\"hi\\\", twice\\\\\"} 3\n\
                    y 4.5 1700000000000\n\
                    z_bucket{le=\"+Inf\"} 7\n";
        let read: Vec<_> = samples(text).collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].label("route"), Some("/a/{id}"));
        assert_eq!(read[0].label("note"), Some("say \"hi\", twice\\"));
        assert_eq!(read[0].value, 3.0);
        assert_eq!((read[1].name, read[1].value), ("y", 4.5));
        assert_eq!(read[2].label("le").map(number), Some(Some(f64::INFINITY)));
    }

    #[test]
    fn a_line_that_is_no_sample_is_skipped() {
        assert_eq!(samples("x{a=\"unterminated} 1\nnovalue\n").count(), 0);
    }
}
