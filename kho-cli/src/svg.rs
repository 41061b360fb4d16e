//! `kho map`: an SVG picture of the physical address space.
//!
//! The address space is cut into rows of equal span (a power of two, about
//! an eighth of the RAM, so a few GiB fit in about eight rows); only rows
//! that hold RAM are drawn, and a line marks each gap of no RAM between
//! them. Each row has a bar (RAM grey, no RAM hatched, scratch areas
//! striped amber, preserved memory colored by block order: blue for
//! single pages through green, orange and red to purple for order 10), a
//! thin lane
//! under it for the memory map's own pages (black) and the root FDT page
//! (red), triangles above it at subtree blobs, a band along the bar's
//! bottom colored by owner (each memfd, each `reserve_mem` region, the
//! self-test's data: which guest RAM survived, at a glance), and tick marks
//! every eighth of the row. Anything preserved is drawn at least [`MIN_WIDTH`] pixels
//! wide so a single page stays visible; runs of one order that fall on the
//! same pixels are merged into one rectangle, so the file stays small
//! whatever the number of blocks. Every rectangle has a tooltip
//! (`<title>`) with its exact PAs.

use std::fmt::Write;

use kho_abi::PAGE_SIZE;

use crate::inspect::Run;
use crate::payload::Owner;
use crate::report::{Span, human};

/// Width of the picture in pixels.
pub const WIDTH: f64 = 1400.0;
/// The least width anything preserved is drawn with.
pub const MIN_WIDTH: f64 = 1.5;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 40.0;
const BAR_W: f64 = WIDTH - LEFT - RIGHT;
const ROW_H: f64 = 88.0;
const GAP_H: f64 = 26.0;
const BAR_TOP: f64 = 22.0;
const BAR_H: f64 = 28.0;
const LANE_TOP: f64 = BAR_TOP + BAR_H + 2.0;
const LANE_H: f64 = 8.0;
const TICKS: u64 = 8;
const PAGE: u64 = PAGE_SIZE as u64;

/// What the map shows.
#[derive(Debug)]
pub struct MapInput<'a> {
    /// The title line.
    pub title: String,
    /// The summary line under it.
    pub subtitle: String,
    /// RAM ranges, ascending.
    pub ram: &'a [Span],
    /// Scratch areas.
    pub scratch: &'a [Span],
    /// Runs of preserved blocks, each of one order.
    pub runs: &'a [Run],
    /// Pages of the memory map (radix nodes or `kho-v1` chunks/bitmaps).
    pub map_pages: &'a [u64],
    /// What to call those pages in the legend.
    pub map_pages_name: &'a str,
    /// The root FDT's page.
    pub fdt_page: Option<u64>,
    /// Subtree blobs: name, PA, size.
    pub subtrees: Vec<(String, u64, Option<u64>)>,
    /// Memory the decoded payloads own (each memfd, each reserve_mem
    /// region, the self-test's data), drawn as a band along the bottom of
    /// the bar in the owner's color.
    pub owners: &'a [Owner],
}

/// Colors of owners, in turn.
const OWNER_COLORS: [&str; 8] =
    ["#d81b60", "#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00acc1", "#6d4c41", "#3949ab"];

/// Owners named in the legend; the rest share the colors in turn and are
/// named in their tooltips.
const OWNER_LEGEND_MAX: usize = 16;

/// The height of the owner band at the bottom of the bar.
const OWNER_H: f64 = 7.0;

fn owner_color(i: usize) -> &'static str {
    OWNER_COLORS[i % OWNER_COLORS.len()]
}

/// Colors of preserved blocks by order: a ramp from blue (order 0) through
/// green, yellow, orange and red to purple (order 10, the kernel's
/// `MAX_PAGE_ORDER`), then darker, distinct hues for huge folios.
const ORDER_COLORS: [&str; 19] = [
    "#2b5fad", "#3a9bdc", "#1fb5b5", "#2e9e58", "#8cbf26", "#c9b31a", "#ef8a17", "#e0452b", "#c2185b", "#8e3fb5",
    "#5a3aa8", "#795548", "#607d8b", "#9e9d24", "#00838f", "#ad1457", "#4527a0", "#37474f", "#bf360c",
];

/// The color of preserved blocks of `order`: blue for order 0 through
/// green, yellow, orange and red to purple for order 10, then darker hues.
pub fn order_color(order: u32) -> &'static str {
    ORDER_COLORS[(order as usize).min(ORDER_COLORS.len() - 1)]
}

/// An SVG document being written: the one writer of SVG syntax in kho (the
/// `kho map` picture here, and kho-bench's plots). Markup without text is
/// written through [`std::fmt::Write`]; text goes through [`Svg::text`]
/// or [`escape`], which make any string safe as content or attribute.
///
/// ```
/// use std::fmt::Write;
///
/// use kho_cli::svg::Svg;
///
/// let mut doc = Svg::new(100.0, 50.0, r#"font-family="sans-serif""#);
/// let _ = writeln!(doc, r#"<rect width="10" height="10"/>"#);
/// doc.text("title", "", "a < b");
/// let out = doc.finish();
/// assert!(out.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="100" height="50""#));
/// assert!(out.contains("<title>a &lt; b</title>"));
/// assert!(out.ends_with("</svg>\n"));
/// ```
pub struct Svg {
    out: String,
}

impl Svg {
    /// Opens a document of `width` by `height` user units (also its pixel
    /// size), with `attrs` added to the root element.
    pub fn new(width: f64, height: f64, attrs: &str) -> Svg {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" {attrs}>"#
        );
        Svg { out }
    }

    /// Writes `<name attrs>text</name>` with `text` escaped.
    pub fn text(&mut self, name: &str, attrs: &str, text: &str) {
        let sep = if attrs.is_empty() { "" } else { " " };
        let _ = writeln!(self.out, "<{name}{sep}{attrs}>{}</{name}>", escape(text));
    }

    /// Closes the document and returns it.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

impl Write for Svg {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.out.push_str(s);
        Ok(())
    }
}

/// Escapes text for SVG content and attributes; control characters, which
/// XML does not allow, become `?`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The span of a row: the least power of two, at least 64 KiB, that is at
/// least an eighth of the RAM.
pub fn row_span(ram: &[Span]) -> u64 {
    let total: u64 = ram.iter().map(|r| r.size).sum();
    (total / TICKS).max(64 << 10).checked_next_power_of_two().unwrap_or(1 << 63)
}

/// Starts of the rows that hold RAM, ascending.
fn rows(ram: &[Span], span: u64) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for r in ram {
        let end = r.pa.saturating_add(r.size);
        let mut row = r.pa / span * span;
        while row < end {
            if out.last() != Some(&row) {
                out.push(row);
            }
            row = match row.checked_add(span) {
                Some(n) => n,
                None => break,
            };
        }
    }
    out
}

/// One rectangle of a strip: pixels, the PAs it spans, and what it holds.
#[derive(Clone, Copy, Debug)]
struct Span2 {
    x0: f64,
    x1: f64,
    start: u64,
    end: u64,
    /// Items (blocks or pages) merged into it.
    count: u64,
    /// Bytes they cover.
    bytes: u64,
}

impl Span2 {
    /// Share of `start..end` that is covered, for the fill opacity: a
    /// rectangle over every other page reads lighter than a solid one.
    fn density(&self) -> f64 {
        self.bytes as f64 / (self.end - self.start).max(1) as f64
    }

    /// Fill opacity from the density, never so faint that a sparse run
    /// disappears.
    fn opacity(&self) -> f64 {
        0.35 + 0.65 * self.density().min(1.0)
    }
}

/// Rectangles of one kind along a row, merged where they share pixels.
struct Strip {
    spans: Vec<Span2>,
}

impl Strip {
    fn new() -> Strip {
        Strip { spans: Vec::new() }
    }

    /// Adds `[start, end)` (PAs, `count` items) drawn at `[x0, x1)`.
    fn add(&mut self, x0: f64, x1: f64, start: u64, end: u64, count: u64) {
        let x1 = x1.max(x0 + MIN_WIDTH);
        let bytes = end - start;
        match self.spans.last_mut() {
            Some(last) if x0 <= last.x1 + 0.5 => {
                last.x1 = last.x1.max(x1);
                last.end = last.end.max(end);
                last.count += count;
                last.bytes += bytes;
            }
            _ => self.spans.push(Span2 { x0, x1, start, end, count, bytes }),
        }
    }
}

struct Canvas {
    out: String,
}

impl Canvas {
    /// A rectangle at `[x, y, width, height]`.
    fn rect(&mut self, class: &str, area: [f64; 4], fill: &str, tip: Option<&str>) {
        self.rect_faded(class, area, fill, 1.0, tip);
    }

    /// A rectangle filled at `opacity`, with an optional tooltip.
    fn rect_faded(&mut self, class: &str, [x, y, w, h]: [f64; 4], fill: &str, opacity: f64, tip: Option<&str>) {
        let _ = write!(
            self.out,
            r#"<rect class="{class}" x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{h:.1}" fill="{fill}""#
        );
        if opacity < 1.0 {
            let _ = write!(self.out, r#" fill-opacity="{opacity:.2}""#);
        }
        match tip {
            Some(t) => {
                let _ = writeln!(self.out, "><title>{}</title></rect>", escape(t));
            }
            None => self.out.push_str("/>\n"),
        }
    }

    fn text(&mut self, x: f64, y: f64, size: u32, anchor: &str, extra: &str, s: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" {extra}>{}</text>"#,
            escape(s)
        );
    }
}

/// Renders the map.
pub fn render(input: &MapInput<'_>) -> String {
    let span = row_span(input.ram);
    let rows = rows(input.ram, span);
    let mut c = Canvas { out: String::new() };

    // Title and legend.
    c.text(20.0, 32.0, 20, "start", r#"font-weight="bold""#, &input.title);
    let sub = format!("{} · {} per row · fill lighter where blocks are sparse", input.subtitle, human(span));
    c.text(20.0, 56.0, 13, "start", r##"fill="#444""##, &sub);
    let mut orders: Vec<(u32, u64)> = Vec::new();
    for r in input.runs {
        match orders.iter_mut().find(|(o, _)| *o == r.order) {
            Some((_, n)) => *n += r.blocks,
            None => orders.push((r.order, r.blocks)),
        }
    }
    orders.sort_unstable();
    let has_hole = rows.iter().any(|&row| {
        let end = row.saturating_add(span);
        let covered: u64 =
            input.ram.iter().map(|r| r.pa.saturating_add(r.size).min(end).saturating_sub(r.pa.max(row))).sum();
        covered < end - row
    });
    let mut legend: Vec<(String, String, String)> = vec![("legend-ram".into(), "#d9d9d9".into(), "RAM".into())];
    if has_hole {
        legend.push(("legend-hole".into(), "url(#hole)".into(), "no RAM".into()));
    }
    if !input.scratch.is_empty() {
        legend.push(("legend-scratch".into(), "url(#scratch)".into(), "scratch area".into()));
    }
    for &(o, n) in &orders {
        let size = human(PAGE << o);
        let label = format!("order {o} ({size}): {n} block{}", if n == 1 { "" } else { "s" });
        legend.push((format!("legend-order o{o}"), order_color(o).to_string(), label));
    }
    legend.push(("legend-tree".into(), "#111".into(), input.map_pages_name.to_string()));
    legend.push(("legend-fdt".into(), "#e0201b".into(), "root FDT page".into()));
    if !input.subtrees.is_empty() {
        legend.push(("legend-subtree".into(), "#1a7f37".into(), "subtree blob".into()));
    }
    for (i, o) in input.owners.iter().enumerate().take(OWNER_LEGEND_MAX) {
        legend.push(("legend-owner".into(), owner_color(i).into(), o.label.clone()));
    }
    if input.owners.len() > OWNER_LEGEND_MAX {
        let more = format!("{} more owners (see tooltips)", input.owners.len() - OWNER_LEGEND_MAX);
        legend.push(("legend-owner".into(), "#999".into(), more));
    }
    let (mut lx, mut ly) = (20.0, 84.0);
    let mut legend_svg = Canvas { out: String::new() };
    for (class, fill, label) in &legend {
        let w = 24.0 + 6.6 * label.chars().count() as f64;
        if lx + w > WIDTH - 20.0 {
            lx = 20.0;
            ly += 22.0;
        }
        legend_svg.rect(class, [lx, ly - 11.0, 14.0, 14.0], fill, None);
        legend_svg.text(lx + 19.0, ly, 12, "start", "", label);
        lx += w + 14.0;
    }
    let mut y = ly + 26.0;

    // Rows.
    let mut by_order: Vec<Vec<&Run>> = vec![Vec::new(); 64];
    for r in input.runs {
        by_order[r.order.min(63) as usize].push(r);
    }
    for v in &mut by_order {
        v.sort_unstable_by_key(|r| r.start);
    }
    let mut pages = input.map_pages.to_vec();
    pages.sort_unstable();
    let mut body = Canvas { out: String::new() };
    let mut prev_end: Option<u64> = None;
    for &row in &rows {
        let row_end = row.saturating_add(span);
        if let Some(pe) = prev_end
            && row > pe
        {
            let msg = format!("no RAM from {pe:#x} to {row:#x} ({})", human(row - pe));
            body.text(LEFT + BAR_W / 2.0, y + 16.0, 12, "middle", r##"fill="#777" font-style="italic""##, &msg);
            y += GAP_H;
        }
        prev_end = Some(row_end);
        draw_row(&mut body, input, &by_order, &pages, row, span, y);
        y += ROW_H;
    }
    let height = y + 20.0;

    let mut out = Svg::new(WIDTH, height, r#"font-family="sans-serif""#);
    out.out.push_str(concat!(
        "<defs>\n",
        r##"<pattern id="hole" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">"##,
        r##"<rect width="6" height="6" fill="#ffffff"/><rect width="2" height="6" fill="#c8c8c8"/></pattern>"##,
        "\n",
        r##"<pattern id="scratch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)">"##,
        r##"<rect width="8" height="8" fill="#fff1b8"/><rect width="3" height="8" fill="#e6a700"/></pattern>"##,
        "\n</defs>\n",
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##,
        "\n"
    ));
    out.out.push_str(&c.out);
    out.out.push_str(&legend_svg.out);
    out.out.push_str(&body.out);
    out.finish()
}

fn draw_row(c: &mut Canvas, input: &MapInput<'_>, by_order: &[Vec<&Run>], pages: &[u64], row: u64, span: u64, y: f64) {
    let row_end = row.saturating_add(span);
    let x = |pa: u64| LEFT + (pa.clamp(row, row_end) - row) as f64 * BAR_W / span as f64;
    let clip = |a: u64, b: u64| (a.max(row), b.min(row_end));

    // Row label and ticks.
    c.text(LEFT - 12.0, y + BAR_TOP + 13.0, 12, "end", r#"font-family="monospace""#, &format!("{row:#x}"));
    c.text(LEFT - 12.0, y + BAR_TOP + 27.0, 11, "end", r##"fill="#555""##, &human(row));
    for t in 0..=TICKS {
        let tx = LEFT + BAR_W * t as f64 / TICKS as f64;
        let _ = writeln!(
            c.out,
            r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#666" stroke-width="1"/>"##,
            y + LANE_TOP + LANE_H,
            y + LANE_TOP + LANE_H + 5.0
        );
        let label = if t == 0 { "+0".to_string() } else { format!("+{}", human(span / TICKS * t)) };
        c.text(tx, y + LANE_TOP + LANE_H + 17.0, 10, "middle", r##"fill="#555""##, &label);
    }

    // Background: no RAM, then RAM over it.
    c.rect("hole", [LEFT, y + BAR_TOP, BAR_W, BAR_H], "url(#hole)", None);
    for r in input.ram {
        let (a, b) = clip(r.pa, r.pa.saturating_add(r.size));
        if a < b {
            let tip = format!("RAM {:#x}..{:#x} ({})", r.pa, r.pa + r.size, human(r.size));
            c.rect("ram", [x(a), y + BAR_TOP, x(b) - x(a), BAR_H], "#d9d9d9", Some(&tip));
        }
    }
    for s in input.scratch {
        let (a, b) = clip(s.pa, s.pa.saturating_add(s.size));
        if a < b {
            let tip = format!("scratch {:#x}..{:#x} ({})", s.pa, s.pa + s.size, human(s.size));
            c.rect("scratch", [x(a), y + BAR_TOP, (x(b) - x(a)).max(MIN_WIDTH), BAR_H], "url(#scratch)", Some(&tip));
        }
    }

    // Preserved memory, larger orders first so small blocks stay on top.
    for (order, runs) in by_order.iter().enumerate().rev() {
        let first = runs.partition_point(|r| r.end <= row);
        let mut strip = Strip::new();
        for r in runs[first..].iter().take_while(|r| r.start < row_end) {
            let (a, b) = clip(r.start, r.end);
            strip.add(x(a), x(b), a, b, r.blocks);
        }
        let color = order_color(order as u32);
        for sp in &strip.spans {
            let (n, a, b) = (sp.count, sp.start, sp.end);
            let mut tip = format!("order {order}: {n} block{} in {a:#x}..{b:#x}", if n == 1 { "" } else { "s" });
            if sp.density() < 1.0 {
                let _ = write!(tip, " ({:.0}% preserved)", sp.density() * 100.0);
            }
            let area = [sp.x0, y + BAR_TOP, sp.x1 - sp.x0, BAR_H];
            c.rect_faded(&format!("preserved o{order}"), area, color, sp.opacity(), Some(&tip));
        }
    }

    // Owners: a band along the bottom of the bar.
    for (i, o) in input.owners.iter().enumerate() {
        let mut strip = Strip::new();
        let mut ranges: Vec<(u64, u64)> = o.ranges.iter().map(|&(a, b)| clip(a, b)).filter(|(a, b)| a < b).collect();
        ranges.sort_unstable();
        for (a, b) in ranges {
            strip.add(x(a), x(b), a, b, 1);
        }
        for sp in &strip.spans {
            let tip = format!("{}: {:#x}..{:#x}", o.label, sp.start, sp.end);
            let area = [sp.x0, y + BAR_TOP + BAR_H - OWNER_H, sp.x1 - sp.x0, OWNER_H];
            c.rect("owner", area, owner_color(i), Some(&tip));
        }
    }

    // The memory map's pages and the root FDT page, in the lane.
    let first = pages.partition_point(|&p| p < row);
    let mut strip = Strip::new();
    for &p in pages[first..].iter().take_while(|&&p| p < row_end) {
        strip.add(x(p), x(p + PAGE), p, p + PAGE, 1);
    }
    for sp in &strip.spans {
        let tip = format!("{} {} in {:#x}..{:#x}", sp.count, input.map_pages_name, sp.start, sp.end);
        c.rect("tree", [sp.x0, y + LANE_TOP, sp.x1 - sp.x0, LANE_H], "#111", Some(&tip));
    }
    if let Some(f) = input.fdt_page.filter(|&f| f >= row && f < row_end) {
        let tip = format!("root FDT page {f:#x}");
        c.rect("fdt", [x(f), y + LANE_TOP, (x(f + PAGE) - x(f)).max(3.0), LANE_H], "#e0201b", Some(&tip));
    }

    // Subtree blobs: a triangle above the bar and the blob's extent on it.
    for (name, pa, size) in &input.subtrees {
        if *pa < row || *pa >= row_end {
            continue;
        }
        let (bx, top) = (x(*pa), y + BAR_TOP);
        let end = pa.saturating_add(size.unwrap_or(1).max(1));
        let w = (x(end) - bx).max(3.0);
        let size_text = size.map_or("size n/a".to_string(), human);
        let _ = writeln!(
            c.out,
            r##"<rect class="blob" x="{bx:.2}" y="{top:.1}" width="{w:.2}" height="{BAR_H}" fill="none" stroke="#1a7f37" stroke-width="1.5"/>"##
        );
        let _ = writeln!(
            c.out,
            r##"<path class="subtree" d="M{:.1},{:.1} l-5,-9 h10 z" fill="#1a7f37"><title>subtree {} at {pa:#x} ({size_text})</title></path>"##,
            bx,
            top - 1.0,
            escape(name)
        );
        c.text(bx + 7.0, top - 4.0, 11, "start", r##"fill="#1a7f37""##, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cover_ram_only() {
        let ram = [Span { pa: 0, size: 3 << 30 }, Span { pa: 4 << 30, size: 1 << 30 }];
        let span = row_span(&ram);
        assert_eq!(span, 512 << 20);
        let r = rows(&ram, span);
        assert_eq!(r.len(), 8);
        assert_eq!(r[6], 4 << 30);
        // 16 MiB of RAM: 2 MiB rows.
        assert_eq!(row_span(&[Span { pa: 0x8000_0000, size: 16 << 20 }]), 2 << 20);
    }

    #[test]
    fn strips_merge_on_shared_pixels_and_keep_a_minimum_width() {
        let mut s = Strip::new();
        s.add(10.0, 10.01, 0, 1, 1);
        s.add(10.2, 10.3, 1, 2, 1);
        s.add(20.0, 25.0, 5, 6, 1);
        assert_eq!(s.spans.len(), 2);
        assert_eq!(s.spans[0].count, 2);
        assert!(s.spans[0].x1 - s.spans[0].x0 >= MIN_WIDTH);
        assert_eq!((s.spans[0].start, s.spans[0].end, s.spans[0].density()), (0, 2, 1.0));
        // Every other page: half dense, lighter but visible.
        let mut s = Strip::new();
        for i in 0..100u64 {
            s.add(i as f64 * 0.01, i as f64 * 0.01 + 0.005, 2 * i, 2 * i + 1, 1);
        }
        assert_eq!(s.spans.len(), 1);
        assert!((s.spans[0].density() - 100.0 / 199.0).abs() < 1e-9);
        assert!(s.spans[0].opacity() > 0.35 && s.spans[0].opacity() < 1.0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;?");
        assert_ne!(order_color(0), order_color(9));
    }
}
