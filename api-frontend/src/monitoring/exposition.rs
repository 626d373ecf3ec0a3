//! The Prometheus text exposition format (version 0.0.4), written by hand: `# HELP` and
//! `# TYPE` once per family, then its samples, label values escaped.

use std::fmt::Write as _;

/// The content type scrapers expect for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Cumulative bucket counts of one histogram series (`counts[i]` = observations ≤
/// `bounds[i]`; the `+Inf` bucket is `count`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramData<'a> {
    pub bounds: &'a [f64],
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a metric family; its samples must follow before the next family.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// The `_bucket`, `_sum` and `_count` series of one histogram.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramData<'_>) {
        for (bound, n) in h.bounds.iter().zip(&h.cumulative) {
            self.bucket(name, labels, &number(*bound), *n);
        }
        self.bucket(name, labels, "+Inf", h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    fn bucket(&mut self, name: &str, labels: &[(&str, &str)], le: &str, n: u64) {
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some(le));
        let _ = writeln!(self.out, " {n}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
}

/// Integers without a fraction; others as Rust prints them (never in exponent form).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
pub(crate) mod parse {
    //! A strict reader of the format, for tests: every sample belongs to the family declared
    //! just before it, names and labels are well-formed, values are numbers.

    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    #[derive(Debug, Default)]
    pub struct Parsed {
        pub types: BTreeMap<String, String>,
        pub samples: Vec<Sample>,
    }

    impl Parsed {
        /// The value of the one sample named `name` with exactly these labels.
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let want: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.samples
                .iter()
                .find(|s| s.name == name && s.labels == want)
                .map(|s| s.value)
        }
    }

    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    pub fn parse(text: &str) -> Result<Parsed, String> {
        let mut p = Parsed::default();
        let mut family: Option<(String, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let err = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                if !valid_name(name) {
                    return Err(err("bad family name"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or_else(|| err("bad TYPE"))?;
                if !["counter", "gauge", "histogram"].contains(&kind) {
                    return Err(err("unknown type"));
                }
                if p.types.insert(name.into(), kind.into()).is_some() {
                    return Err(err("family declared twice"));
                }
                family = Some((name.into(), kind.into()));
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                return Err(err("unexpected line"));
            }
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| err("no value"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| err("bad value"))?,
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((n, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .ok_or_else(|| err("unclosed labels"))?;
                    (n.to_string(), labels(body).map_err(|m| err(&m))?)
                }
            };
            let (fam, kind) = family.as_ref().ok_or_else(|| err("sample before TYPE"))?;
            let belongs = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{fam}{s}")),
                _ => &name == fam,
            };
            if !valid_name(&name) || !belongs {
                return Err(err("sample not of the current family"));
            }
            p.samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Ok(p)
    }

    fn labels(body: &str) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        let mut chars = body.chars().peekable();
        while chars.peek().is_some() {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if !valid_name(&key) || chars.next() != Some('"') {
                return Err(format!("bad label {key:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(c),
                        _ => return Err("bad escape".into()),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated value".into()),
                }
            }
            if out.insert(key, value).is_some() {
                return Err("repeated label".into());
            }
            match chars.next() {
                Some(',') | None => {}
                Some(c) => return Err(format!("unexpected {c:?} after a label")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes_read_back() {
        let mut e = Exposition::new();
        e.family(
            "joblet_jobs",
            "Jobs by state.\nSecond line \\ here",
            Kind::Gauge,
        );
        e.sample("joblet_jobs", &[("state", "RUNNING")], 3.0);
        e.sample("joblet_jobs", &[("state", "we\"ird\\\nvalue")], 0.5);
        e.family("joblet_up", "Up.", Kind::Gauge);
        e.sample("joblet_up", &[], 1.0);
        e.family("joblet_rpc_seconds", "Latency.", Kind::Histogram);
        let h = HistogramData {
            bounds: &[0.1, 1.0],
            cumulative: vec![2, 3],
            count: 4,
            sum: 7.25,
        };
        e.histogram(
            "joblet_rpc_seconds",
            &[("method", "RunJob"), ("code", "OK")],
            &h,
        );
        let text = e.finish();
        let p = parse::parse(&text).unwrap_or_else(|m| panic!("{m}\n{text}"));
        assert_eq!(p.types["joblet_jobs"], "gauge");
        assert_eq!(p.value("joblet_jobs", &[("state", "RUNNING")]), Some(3.0));
        assert_eq!(
            p.value("joblet_jobs", &[("state", "we\"ird\\\nvalue")]),
            Some(0.5)
        );
        assert_eq!(p.value("joblet_up", &[]), Some(1.0));
        let l = [("method", "RunJob"), ("code", "OK")];
        let bucket = |le| p.value("joblet_rpc_seconds_bucket", &[l[0], l[1], ("le", le)]);
        assert_eq!(bucket("0.1"), Some(2.0));
        assert_eq!(bucket("1"), Some(3.0));
        assert_eq!(bucket("+Inf"), Some(4.0));
        assert_eq!(p.value("joblet_rpc_seconds_sum", &l), Some(7.25));
        assert_eq!(p.value("joblet_rpc_seconds_count", &l), Some(4.0));
        assert!(
            text.contains("joblet_jobs{state=\"RUNNING\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.005), "0.005");
        assert_eq!(number(1e-7), "0.0000001");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(-2.0), "-2");
    }

    #[test]
    fn the_reader_refuses_malformed_text() {
        for bad in [
            "joblet_x 1\n",
            "# TYPE joblet_x gauge\njoblet_y 1\n",
            "# TYPE joblet_x gauge\njoblet_x{a=\"1} 1\n",
            "# TYPE joblet_x gauge\njoblet_x one\n",
            "# TYPE joblet_x summary\n",
            "# TYPE joblet_x gauge\n# TYPE joblet_x gauge\n",
        ] {
            assert!(parse::parse(bad).is_err(), "{bad:?}");
        }
    }
}
