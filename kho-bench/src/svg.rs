//! A small line plot: linear or logarithmic axes with labelled ticks, one
//! polyline with markers per series, a legend. The SVG itself is written
//! through `kho_cli::svg`, the one SVG writer of kho.

use std::fmt::Write;

use kho_cli::svg::{Svg, escape};

/// What an axis measures, which decides how its ticks are labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (ticks at powers of two, labelled B, KiB, MiB, ...).
    Bytes,
    /// Gibibytes (ticks at powers of two, labelled MiB, GiB, TiB).
    GiB,
    /// Nanoseconds (labelled ns).
    Nanoseconds,
}

/// One axis.
#[derive(Clone, Debug)]
pub struct Axis {
    /// The label, units included (e.g. "preserved memory (GiB)").
    pub label: String,
    /// How ticks are labelled.
    pub unit: Unit,
    /// Logarithmic scale.
    pub log: bool,
}

/// One line of the plot.
#[derive(Clone, Debug)]
pub struct Series {
    /// Its legend entry.
    pub name: String,
    /// `(x, y)` points, drawn in this order. On a log axis, points with a
    /// coordinate that is not positive are left out.
    pub points: Vec<(f64, f64)>,
    /// Spread of repeated runs, `(x, lowest y, highest y)`, drawn as a
    /// vertical bar at `x`.
    pub spread: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A series with no spread.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points, spread: Vec::new() }
    }
}

/// A line plot.
#[derive(Clone, Debug)]
pub struct Plot {
    /// Title above the plot.
    pub title: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// The lines.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 470.0;
const LEFT: f64 = 95.0;
const RIGHT: f64 = 640.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 400.0;
/// Dash patterns, so that lines lying on top of each other stay visible.
const DASHES: [&str; 3] = ["none", "7 4", "2 3"];
const COLORS: [&str; 10] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/// An axis' value range and ticks, in data coordinates.
struct Scale {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Scale {
    fn new(axis: &Axis, values: &[f64]) -> Scale {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if axis.log {
            if !lo.is_finite() {
                (lo, hi) = (1.0, 10.0);
            }
            let base: f64 = if matches!(axis.unit, Unit::Bytes | Unit::GiB | Unit::Nanoseconds) { 2.0 } else { 10.0 };
            let mut e_lo = (lo.log(base) + 1e-9).floor() as i64;
            let mut e_hi = (hi.log(base) - 1e-9).ceil() as i64;
            if e_hi <= e_lo {
                e_hi = e_lo + 1;
            }
            let step =
                [1i64, 2, 3, 4, 5, 10, 20, 30].into_iter().find(|s| (e_hi - e_lo + s - 1) / s <= 8).unwrap_or(40);
            e_lo = e_lo.div_euclid(step) * step;
            e_hi = e_lo + (e_hi - e_lo + step - 1) / step * step;
            let ticks = (0..=(e_hi - e_lo) / step).map(|i| base.powi((e_lo + i * step) as i32)).collect();
            Scale { log: true, lo: base.powi(e_lo as i32), hi: base.powi(e_hi as i32), ticks }
        } else {
            if !lo.is_finite() {
                (lo, hi) = (0.0, 1.0);
            }
            let lo = lo.min(0.0);
            let hi = if hi > lo { hi } else { lo + 1.0 };
            let raw = (hi - lo) / 6.0;
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
            let hi = (hi / step).ceil() * step;
            let n = ((hi - lo) / step).round() as usize;
            let ticks = (0..=n).map(|i| lo + i as f64 * step).collect();
            Scale { log: false, lo, hi, ticks }
        }
    }

    /// Position of `v` in `[0, 1]` along the axis.
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// `v` with up to three significant digits and no trailing zeros.
fn short(v: f64) -> String {
    let s = if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// A tick label for `v` in `unit`.
pub fn tick_label(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => {
            let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
            let mut k = 0;
            while k + 1 < units.len() && v >= 1024f64.powi(k as i32 + 1) {
                k += 1;
            }
            format!("{} {}", short(v / 1024f64.powi(k as i32)), units[k])
        }
        Unit::GiB => {
            if v >= 1024.0 {
                format!("{} TiB", short(v / 1024.0))
            } else if v >= 1.0 {
                format!("{} GiB", short(v))
            } else {
                format!("{} MiB", short(v * 1024.0))
            }
        }
        Unit::Nanoseconds => format!("{} ns", short(v)),
    }
}

impl Plot {
    /// The points of `s` the axes can show.
    fn visible<'a>(&self, s: &'a Series) -> impl Iterator<Item = (f64, f64)> + 'a {
        let (xlog, ylog) = (self.x.log, self.y.log);
        s.points
            .iter()
            .copied()
            .filter(move |&(x, y)| x.is_finite() && y.is_finite() && (!xlog || x > 0.0) && (!ylog || y > 0.0))
    }

    /// The spread bars the axes can show: `(series index, x, lo, hi)`.
    fn bars(&self) -> impl Iterator<Item = (usize, f64, f64, f64)> + '_ {
        let (xlog, ylog) = (self.x.log, self.y.log);
        self.series.iter().enumerate().flat_map(move |(i, s)| {
            s.spread.iter().copied().filter_map(move |(x, lo, hi)| {
                let ok = [x, lo, hi].iter().all(|v| v.is_finite())
                    && (!xlog || x > 0.0)
                    && (!ylog || (lo > 0.0 && hi > 0.0));
                ok.then_some((i, x, lo, hi))
            })
        })
    }

    /// The plot as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let xs: Vec<f64> = self.series.iter().flat_map(|s| self.visible(s).map(|p| p.0)).collect();
        let mut ys: Vec<f64> = self.series.iter().flat_map(|s| self.visible(s).map(|p| p.1)).collect();
        if !ys.is_empty() {
            ys.extend(self.bars().flat_map(|(_, _, lo, hi)| [lo, hi]));
        }
        let (sx, sy) = (Scale::new(&self.x, &xs), Scale::new(&self.y, &ys));
        let px = |v: f64| LEFT + sx.frac(v) * (RIGHT - LEFT);
        let py = |v: f64| BOTTOM - sy.frac(v) * (BOTTOM - TOP);
        let mut o = Svg::new(WIDTH, HEIGHT, r#"font-family="sans-serif" font-size="12""#);
        o.text("title", "", &self.title);
        let _ = writeln!(o, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<text class="title" x="{}" y="28" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            (LEFT + RIGHT) / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        let _ = writeln!(o, r##"<g class="grid" stroke="#dddddd" stroke-width="1">"##);
        for &t in &sx.ticks {
            let _ = writeln!(o, r#"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{BOTTOM}"/>"#, px(t));
        }
        for &t in &sy.ticks {
            let _ = writeln!(o, r#"<line x1="{LEFT}" y1="{0:.1}" x2="{RIGHT}" y2="{0:.1}"/>"#, py(t));
        }
        let _ = writeln!(o, "</g>");
        let _ = writeln!(o, r#"<g class="ticks">"#);
        for &t in &sx.ticks {
            let _ = writeln!(
                o,
                r#"<text class="xtick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                px(t),
                BOTTOM + 18.0,
                escape(&tick_label(t, self.x.unit))
            );
        }
        for &t in &sy.ticks {
            let _ = writeln!(
                o,
                r#"<text class="ytick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                py(t) + 4.0,
                escape(&tick_label(t, self.y.unit))
            );
        }
        let _ = writeln!(o, "</g>");
        let _ = writeln!(
            o,
            r#"<rect class="frame" x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="black"/>"#,
            RIGHT - LEFT,
            BOTTOM - TOP
        );
        let _ = writeln!(
            o,
            r#"<text class="xlabel" x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
            (LEFT + RIGHT) / 2.0,
            BOTTOM + 42.0,
            escape(&self.x.label)
        );
        let ymid = (TOP + BOTTOM) / 2.0;
        let _ = writeln!(
            o,
            r#"<text class="ylabel" x="22" y="{ymid}" text-anchor="middle" font-size="13" transform="rotate(-90 22 {ymid})">{}</text>"#,
            escape(&self.y.label)
        );
        if ys.is_empty() {
            let _ = writeln!(
                o,
                r#"<text class="nodata" x="{}" y="{ymid}" text-anchor="middle">no data</text>"#,
                (LEFT + RIGHT) / 2.0
            );
        }
        // Lines, markers and the legend.
        let _ = writeln!(o, r#"<g class="series" fill="none" stroke-width="2">"#);
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<String> = self.visible(s).map(|(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
            let dash = DASHES[i % DASHES.len()];
            let _ = writeln!(o, r#"<g stroke="{color}" stroke-dasharray="{dash}"><title>{}</title>"#, escape(&s.name));
            if pts.len() > 1 {
                let _ = writeln!(o, r#"<polyline points="{}"/>"#, pts.join(" "));
            }
            for (x, y) in self.visible(s) {
                let _ = writeln!(o, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, px(x), py(y));
            }
            for (j, x, lo, hi) in self.bars() {
                if j == i {
                    let _ = writeln!(
                        o,
                        r#"<line class="spread" x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke-dasharray="none"/>"#,
                        px(x),
                        py(lo),
                        py(hi)
                    );
                }
            }
            let _ = writeln!(o, "</g>");
        }
        let _ = writeln!(o, "</g>");
        let _ = writeln!(o, r#"<g class="legend">"#);
        let _ = writeln!(o, r#"<text x="{}" y="{}" font-weight="bold">legend</text>"#, RIGHT + 20.0, TOP + 4.0);
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let y = TOP + 24.0 + 20.0 * i as f64;
            let _ = writeln!(
                o,
                r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2" stroke-dasharray="{}"/>"#,
                RIGHT + 20.0,
                RIGHT + 44.0,
                DASHES[i % DASHES.len()]
            );
            let _ = writeln!(o, r#"<circle cx="{}" cy="{y}" r="3" fill="{color}"/>"#, RIGHT + 32.0);
            let _ = writeln!(o, r#"<text x="{}" y="{}">{}</text>"#, RIGHT + 50.0, y + 4.0, escape(&s.name));
        }
        let _ = writeln!(o, "</g>");
        o.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(series: Vec<Series>) -> Plot {
        Plot {
            title: "tree pages <radix> & friends".into(),
            x: Axis { label: "preserved memory (GiB)".into(), unit: Unit::GiB, log: true },
            y: Axis { label: "metadata (bytes)".into(), unit: Unit::Bytes, log: true },
            series,
        }
    }

    fn texts<'a>(doc: &'a roxmltree::Document<'a>, class: &str) -> Vec<&'a str> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text") && n.attribute("class") == Some(class))
            .filter_map(|n| n.text())
            .collect()
    }

    fn num(n: &roxmltree::Node<'_, '_>, attr: &str) -> f64 {
        n.attribute(attr).expect(attr).parse().expect("number")
    }

    #[test]
    fn parses_with_labels_legend_and_lines() {
        let p = plot(vec![
            Series::new("radix-v1", vec![(1.0, 28672.0), (4.0, 53248.0), (1024.0, 3.4e7)]),
            Series::new("a \"list\" of <ranges>", vec![(1.0, 24.0), (1024.0, 2.4e4)]),
        ]);
        let svg = p.to_svg();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
        assert_eq!(texts(&doc, "xlabel"), ["preserved memory (GiB)"]);
        assert_eq!(texts(&doc, "ylabel"), ["metadata (bytes)"]);
        assert_eq!(texts(&doc, "title"), ["tree pages <radix> & friends"]);
        let legend: Vec<&str> = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("legend"))
            .expect("legend")
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(legend, ["legend", "radix-v1", "a \"list\" of <ranges>"]);
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("polyline")).count(), 2);
        // Ticks span the data: 1 GiB and 1 TiB on x, 16 B and 32 MiB inside
        // the y range.
        let xt = texts(&doc, "xtick");
        assert_eq!(xt.first(), Some(&"1 GiB"));
        assert_eq!(xt.last(), Some(&"1 TiB"));
        let yt = texts(&doc, "ytick");
        assert!(yt.len() >= 3 && yt.len() <= 9, "{yt:?}");
        // Every drawn coordinate is a finite number inside the picture.
        for n in doc.descendants() {
            for a in ["cx", "cy", "x1", "y1", "x2", "y2", "x", "y"] {
                if let Some(v) = n.attribute(a) {
                    let v: f64 = v.parse().expect("number");
                    assert!(v.is_finite() && (0.0..=WIDTH).contains(&v), "{a}={v}");
                }
            }
            if let Some(pts) = n.attribute("points") {
                for xy in pts.split(' ') {
                    let (x, y) = xy.split_once(',').expect("x,y");
                    let (x, y): (f64, f64) = (x.parse().expect("x"), y.parse().expect("y"));
                    assert!((LEFT - 0.01..=RIGHT + 0.01).contains(&x), "x {x}");
                    assert!((TOP - 0.01..=BOTTOM + 0.01).contains(&y), "y {y}");
                }
            }
        }
    }

    #[test]
    fn larger_values_are_drawn_higher_and_further_right() {
        let p = plot(vec![Series::new("s", vec![(1.0, 10.0), (16.0, 1e6)])]);
        let svg = p.to_svg();
        let doc = roxmltree::Document::parse(&svg).expect("parse");
        let c: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle") && n.ancestors().any(|a| a.attribute("class") == Some("series")))
            .collect();
        assert_eq!(c.len(), 2);
        assert!(num(&c[1], "cx") > num(&c[0], "cx"));
        assert!(num(&c[1], "cy") < num(&c[0], "cy"));
    }

    #[test]
    fn non_positive_points_are_left_out_of_log_axes() {
        let p = plot(vec![Series::new("s", vec![(1.0, 0.0), (2.0, f64::NAN), (4.0, 8.0)])]);
        let svg = p.to_svg();
        let doc = roxmltree::Document::parse(&svg).expect("parse");
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("polyline")).count(), 0);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn empty_plot_is_still_valid() {
        let mut p = plot(vec![]);
        p.y = Axis { label: "time (ns)".into(), unit: Unit::Nanoseconds, log: false };
        let svg = p.to_svg();
        let doc = roxmltree::Document::parse(&svg).expect("parse");
        assert_eq!(texts(&doc, "nodata"), ["no data"]);
        assert_eq!(texts(&doc, "ylabel"), ["time (ns)"]);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn spread_bars_are_drawn_inside_the_axes() {
        let mut s = Series::new("s", vec![(1.0, 10.0), (4.0, 12.0)]);
        s.spread = vec![(1.0, 8.0, 30.0), (4.0, 0.0, 13.0)];
        let mut p = plot(vec![s]);
        p.y = Axis { label: "ns per block (log scale)".into(), unit: Unit::Nanoseconds, log: true };
        let svg = p.to_svg();
        let doc = roxmltree::Document::parse(&svg).expect("parse");
        let bars: Vec<_> = doc.descendants().filter(|n| n.attribute("class") == Some("spread")).collect();
        // The bar with a zero on a log axis is left out.
        assert_eq!(bars.len(), 1);
        assert!(num(&bars[0], "y1") > num(&bars[0], "y2"));
        assert!(num(&bars[0], "y2") >= TOP - 0.01);
        assert_eq!(tick_label(20.0, Unit::Nanoseconds), "20 ns");
    }

    #[test]
    fn tick_labels() {
        assert_eq!(tick_label(1.0, Unit::Bytes), "1 B");
        assert_eq!(tick_label(4096.0, Unit::Bytes), "4 KiB");
        assert_eq!(tick_label(1536.0 * 1024.0, Unit::Bytes), "1.5 MiB");
        assert_eq!(tick_label(1024.0, Unit::GiB), "1 TiB");
        assert_eq!(tick_label(0.25, Unit::GiB), "256 MiB");
        assert_eq!(tick_label(16.0, Unit::GiB), "16 GiB");
        assert_eq!(tick_label(21.8, Unit::Nanoseconds), "21.8 ns");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
