//! One line of the report's main table, its target, and number formats.

use std::time::Duration;

/// A design target for a row's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// The value must be at most this.
    AtMost(f64),
    /// The value must be at least this.
    AtLeast(f64),
    /// No target in the design: shown for orientation.
    None,
}

impl Target {
    /// Whether `v` meets the target (`None` when there is none).
    pub fn met(self, v: f64) -> Option<bool> {
        match self {
            Target::AtMost(t) => Some(v <= t),
            Target::AtLeast(t) => Some(v >= t),
            Target::None => None,
        }
    }
}

/// One measurement beside its limit.
#[derive(Clone, Debug)]
pub struct Row {
    /// Area (tracker, block sets, ...).
    pub area: &'static str,
    /// What was measured.
    pub what: String,
    /// Our figure, formatted.
    pub ours: String,
    /// The limit's name and figure, formatted.
    pub limit: String,
    /// The value the target applies to (a ratio or bytes per entry).
    pub value: f64,
    /// Unit suffix of `value` ("x" for ratios).
    pub unit: &'static str,
    /// The target.
    pub target: Target,
    /// The kernel algorithm's figure, formatted, and kho's time over it.
    pub kernel: Option<(String, f64)>,
}

impl Row {
    /// A ratio row: `ours / limit` with the durations shown.
    pub fn ratio(
        area: &'static str,
        what: impl Into<String>,
        ours: Duration,
        limit_name: &str,
        limit: Duration,
    ) -> Row {
        Row {
            area,
            what: what.into(),
            ours: fmt_duration(ours),
            limit: format!("{limit_name}: {}", fmt_duration(limit)),
            value: ratio(ours, limit),
            unit: "x",
            target: Target::None,
            kernel: None,
        }
    }

    /// The same row with the kernel algorithm's time beside kho's `ours`.
    pub fn with_kernel(mut self, ours: Duration, kernel: Duration) -> Row {
        self.kernel = Some((fmt_duration(kernel), ratio(ours, kernel)));
        self
    }

    /// The kernel cells: its figure and kho / kernel.
    pub fn kernel_cells(&self) -> (String, String) {
        match &self.kernel {
            Some((k, r)) => (k.clone(), format!("{}x", fmt_num(*r))),
            None => ("—".into(), "—".into()),
        }
    }

    /// The same row with a target.
    pub fn with_target(mut self, target: Target) -> Row {
        self.target = target;
        self
    }

    /// `value` and the target as table cells.
    pub fn value_cell(&self) -> String {
        format!("{}{}", fmt_num(self.value), self.unit)
    }

    /// The target cell.
    pub fn target_cell(&self) -> String {
        match self.target {
            Target::AtMost(t) => format!("≤ {}{}", fmt_num(t), self.unit),
            Target::AtLeast(t) => format!("≥ {}{}", fmt_num(t), self.unit),
            Target::None => "—".into(),
        }
    }

    /// The "met" cell.
    pub fn met_cell(&self) -> &'static str {
        match self.target.met(self.value) {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        }
    }
}

/// `a / b` as a float (infinity for a zero `b`).
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// A number with about three significant digits.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 1000.0 || v == v.trunc() {
        group(v.round() as i128)
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// An integer with thousands separators (`526,386`).
pub fn group(v: i128) -> String {
    let s = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 { format!("-{out}") } else { out }
}

/// A duration in the unit that suits it (ns, µs, ms, s).
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{} ns", d.as_nanos())
    }
}

/// Bytes in binary units (`276 KiB`, `1.50 MiB`).
pub fn fmt_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut k = 0;
    while v >= 1024.0 && k + 1 < units.len() {
        v /= 1024.0;
        k += 1;
    }
    if k == 0 || v == v.trunc() { format!("{v:.0} {}", units[k]) } else { format!("{v:.2} {}", units[k]) }
}

/// `part` as a percentage of `whole`, with enough digits to be non-zero.
pub fn fmt_percent(part: u64, whole: u64) -> String {
    let p = 100.0 * part as f64 / whole as f64;
    if p == 0.0 {
        "0 %".into()
    } else if p >= 1.0 {
        format!("{p:.2} %")
    } else {
        // Two significant digits.
        let digits = (-p.log10().floor()) as usize + 1;
        format!("{p:.digits$} %")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Target::AtMost(2.0).met(1.99), Some(true));
        assert_eq!(Target::AtMost(2.0).met(2.01), Some(false));
        assert_eq!(Target::AtLeast(1.7).met(1.5), Some(false));
        assert_eq!(Target::None.met(100.0), None);
        let r = Row::ratio("tracker", "x", Duration::from_millis(3), "limit", Duration::from_millis(2))
            .with_target(Target::AtMost(2.0));
        assert_eq!((r.value_cell(), r.target_cell(), r.met_cell()), ("1.50x".into(), "≤ 2x".into(), "yes"));
        assert_eq!(r.limit, "limit: 2.00 ms");
    }

    #[test]
    fn formats() {
        assert_eq!(group(526_386), "526,386");
        assert_eq!(group(-1000), "-1,000");
        assert_eq!(group(999), "999");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(16.0), "16");
        assert_eq!(fmt_num(12345.6), "12,346");
        assert_eq!(fmt_duration(Duration::from_micros(21_800)), "21.80 ms");
        assert_eq!(fmt_duration(Duration::from_nanos(41)), "41 ns");
        assert_eq!(fmt_bytes(276 * 1024), "276 KiB");
        assert_eq!(fmt_bytes(1536 * 1024), "1.50 MiB");
        assert_eq!(fmt_bytes(24), "24 B");
        assert_eq!(fmt_percent(1, 4), "25.00 %");
        assert_eq!(fmt_percent(24, 1 << 30), "0.0000022 %");
        assert_eq!(fmt_percent(0, 10), "0 %");
    }
}
