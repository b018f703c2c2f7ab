//! A small strict parser of the OpenMetrics text format (what `GET /metrics` serves), so the
//! tests check the exposition's structure, not just substrings.

use std::collections::{BTreeMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family: its metadata and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub samples: Vec<Sample>,
    pub kind: String,
    pub help: Option<String>,
    pub unit: Option<String>,
}

/// A parsed exposition.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    /// The value of the sample `name` whose labels include all of `labels`, if exactly one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self.matching(name, labels).map(|s| s.value).collect();
        match found.as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }

    /// The sum over samples `name` whose labels include all of `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .iter()
            .flat_map(|f| f.samples.iter())
            .filter(move |s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
    }

    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if v.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) && !v.is_empty() => {
            v.parse().map_err(|_| format!("bad number {v:?}"))
        }
        _ => Err(format!("bad number {v:?}")),
    }
}

/// Parses `name{a="b",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("sample without value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut end = None;
        loop {
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i);
                    break;
                }
                None => break,
                _ => {}
            }
            let start = chars.peek().map(|(i, _)| *i).unwrap_or(0);
            let mut lname_end = start;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    lname_end = i;
                    break;
                }
            }
            let lname = &r[start..lname_end];
            if !valid_label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, '\n')) | None => return Err("unterminated label value".into()),
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.insert(lname.to_string(), value).is_some() {
                return Err(format!("label {lname} twice"));
            }
            match chars.peek() {
                Some((_, ',')) => {
                    chars.next();
                }
                Some((_, '}')) => {}
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        }
        let end = end.ok_or("unterminated label set")?;
        rest = &r[end + 1..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().ok_or("no value")?)?;
    if let Some(ts) = parts.next() {
        parse_value(ts)?;
    }
    if parts.next().is_some() {
        return Err("trailing text after the sample".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" | "gaugehistogram" => {
            &["_bucket", "_count", "_sum", "_created", "_gcount", "_gsum"]
        }
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        "stateset" | "gauge" | "unknown" => &[""],
        _ => &[],
    }
}

/// Parses and checks a whole exposition; the error names the line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the exposition must end with # EOF")?;
    let mut families: Vec<Family> = Vec::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut seen_samples: HashSet<String> = HashSet::new();
    for (n, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kw, name, rest) = (parts.next(), parts.next(), parts.next());
            let (Some(kw), Some(name)) = (kw, name) else {
                return Err(at("bad metadata line".into()));
            };
            if !valid_metric_name(name) {
                return Err(at(format!("bad family name {name:?}")));
            }
            if families.last().is_none_or(|f| f.name != name) {
                if closed.contains(name) {
                    return Err(at(format!("family {name} appears twice")));
                }
                if let Some(prev) = families.last() {
                    closed.insert(prev.name.clone());
                }
                families.push(Family {
                    name: name.to_string(),
                    kind: "unknown".into(),
                    help: None,
                    unit: None,
                    samples: Vec::new(),
                });
            }
            let f = families.last_mut().ok_or("no family")?;
            if !f.samples.is_empty() {
                return Err(at("metadata after samples".into()));
            }
            match kw {
                "HELP" => f.help = Some(rest.unwrap_or("").to_string()),
                "TYPE" => {
                    let kind = rest.ok_or_else(|| at("TYPE without a type".into()))?;
                    if suffixes(kind).is_empty() {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    f.kind = kind.to_string();
                }
                "UNIT" => {
                    let unit = rest.unwrap_or("");
                    if !name.ends_with(&format!("_{unit}")) {
                        return Err(at("a family with a unit must end with _<unit>".into()));
                    }
                    f.unit = Some(unit.to_string());
                }
                _ => return Err(at(format!("unknown metadata {kw}"))),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("comment lines are not allowed".into()));
        }
        let sample = parse_sample(line).map_err(at)?;
        let f = families
            .last_mut()
            .ok_or_else(|| at("sample before any TYPE".into()))?;
        let suffix = sample
            .name
            .strip_prefix(f.name.as_str())
            .ok_or_else(|| at(format!("sample outside family {}", f.name)))?;
        if !suffixes(&f.kind).contains(&suffix) {
            return Err(at(format!(
                "suffix {suffix:?} not allowed for a {}",
                f.kind
            )));
        }
        if f.kind == "counter"
            && suffix == "_total"
            && (sample.value.is_nan() || sample.value < 0.0)
        {
            return Err(at("negative counter".into()));
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        if !seen_samples.insert(key) {
            return Err(at("duplicate sample".into()));
        }
        f.samples.push(sample);
    }
    for f in &families {
        if f.kind == "histogram" {
            check_histogram(f)?;
        }
    }
    Ok(Exposition { families })
}

/// Buckets ascending and cumulative; `+Inf` present and equal to `_count`.
fn check_histogram(f: &Family) -> Result<(), String> {
    // Per label set (without `le`): the (le, value) buckets and the `_count`.
    type Series = (Vec<(f64, f64)>, Option<f64>);
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for s in &f.samples {
        let mut labels = s.labels.clone();
        let le = labels.remove("le");
        let key = format!("{labels:?}");
        let entry = series.entry(key).or_default();
        if s.name.ends_with("_bucket") {
            let le = le.ok_or_else(|| format!("{}: bucket without le", f.name))?;
            entry.0.push((parse_value(&le)?, s.value));
        } else if s.name.ends_with("_count") {
            entry.1 = Some(s.value);
        }
    }
    for (key, (buckets, count)) in series {
        let mut last = (f64::NEG_INFINITY, 0.0);
        for &(le, v) in &buckets {
            if le <= last.0 || v < last.1 {
                return Err(format!("{}{key}: buckets not ascending/cumulative", f.name));
            }
            last = (le, v);
        }
        if last.0 != f64::INFINITY || Some(last.1) != count {
            return Err(format!("{}{key}: +Inf bucket missing or != _count", f.name));
        }
    }
    Ok(())
}
