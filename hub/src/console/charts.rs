//! Charts as inline SVG, drawn on the server: grouped bars and lines. Series differ by
//! pattern (solid, hatched, dashed), not only by colour, and every chart carries its
//! numbers as a table under a disclosure for screen readers and for reading exact
//! values.

use maud::{html, Markup};

use super::i18n::{Lang, Msg};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Solid bars, solid line.
    Solid,
    /// Hatched bars, dashed line.
    Alternate,
}

pub struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<f64>,
    pub style: Style,
}

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 78.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;

/// The top of the value axis: the largest value rounded up to 1, 2 or 5 times a power
/// of ten (at least `floor`, which is 1 or more).
pub fn axis_top(max: f64, floor: f64) -> f64 {
    let floor = floor.max(1.0);
    if !(max.is_finite() && max > floor) {
        return floor;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * magnitude)
}

fn legend(series: &[Series], lines: bool) -> Markup {
    html! {
        ul.legend {
            @for s in series {
                li {
                    span.key.(match (s.style, lines) {
                        (Style::Solid, false) => "solid",
                        (Style::Alternate, false) => "hatched",
                        (Style::Solid, true) => "line",
                        (Style::Alternate, true) => "dashed",
                    }) {}
                    (s.name)
                }
            }
        }
    }
}

fn data_table(
    lang: Lang,
    axis: &str,
    labels: &[String],
    series: &[Series],
    fmt: &dyn Fn(f64) -> String,
) -> Markup {
    html! {
        details {
            summary { (Msg::Details.text(lang)) }
            div.table-wrap {
                table {
                    thead { tr { th { (axis) } @for s in series { th.num { (s.name) } } } }
                    tbody {
                        @for (i, label) in labels.iter().enumerate() {
                            tr {
                                td { (label) }
                                @for s in series { td.num { (fmt(s.values.get(i).copied().unwrap_or(0.0))) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Gridlines at 0, half and the top, labelled (the half only when its label differs
/// from both ends: small whole numbers have no half).
fn value_axis(top: f64, fmt: &dyn Fn(f64) -> String) -> Markup {
    let plot_h = PLOT_H;
    let labels = [fmt(0.0), fmt(top / 2.0), fmt(top)];
    html! {
        @for step in 0..=2usize {
            @let y = TOP + plot_h - plot_h * step as f64 / 2.0;
            @if step != 1 || (labels[1] != labels[0] && labels[1] != labels[2]) {
                line.axis x1=(LEFT) x2=(WIDTH) y1=(y) y2=(y) stroke-opacity="0.3" {}
                text x=(LEFT - 4.0) y=(y + 3.0) text-anchor="end" { (labels[step]) }
            }
        }
    }
}

/// Whether label `i` of `n` is printed under the axis: about six of them, always the
/// last, none too close before it.
fn labelled(i: usize, n: usize) -> bool {
    let every = n.div_ceil(6).max(1);
    i + 1 == n || (i.is_multiple_of(every) && n - 1 - i >= every.div_ceil(2).max(1))
}

/// The last label ends at its mark (it would run off the chart if centred).
fn anchor(i: usize, n: usize) -> &'static str {
    if i + 1 == n && n > 1 {
        "end"
    } else {
        "middle"
    }
}

/// One chart: its words, its data and how values are written.
pub struct Chart<'a> {
    pub lang: Lang,
    /// Unique on the page (the SVG's title id).
    pub id: &'a str,
    pub title: &'a str,
    /// What the labels are (the table's first column).
    pub axis: &'a str,
    pub labels: &'a [String],
    pub series: &'a [Series<'a>],
    pub fmt: &'a dyn Fn(f64) -> String,
    /// The value axis reaches at least this (1 for counts, 100 for cents).
    pub floor: f64,
}

const PLOT_H: f64 = HEIGHT - BOTTOM - TOP;

impl Chart<'_> {
    /// The top of the value axis for this chart's values.
    fn top(&self) -> f64 {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max);
        axis_top(max, self.floor)
    }

    /// The figure around `marks` (what bars or lines draw inside the plot): caption,
    /// legend, the SVG with its title, value axis, the label under each mark `x(i)`,
    /// the base line, and the numbers as a table.
    fn figure(&self, lines: bool, marks: Markup, label_x: &dyn Fn(usize) -> f64) -> Markup {
        let n = self.labels.len();
        html! {
            figure.chart {
                figcaption { h3 { (self.title) } }
                (legend(self.series, lines))
                svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby={ (self.id) "-title" } {
                    title id={ (self.id) "-title" } { (self.title) }
                    defs {
                        pattern #hatch width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                            rect width="4" height="4" fill="#ffffff" {}
                            line x1="0" y1="0" x2="0" y2="4" stroke="#1d2433" stroke-width="2" {}
                        }
                    }
                    (value_axis(self.top(), self.fmt))
                    (marks)
                    @for (i, label) in self.labels.iter().enumerate() {
                        @if labelled(i, n) {
                            text x=(label_x(i)) y=(HEIGHT - 6.0) text-anchor=(anchor(i, n)) { (label) }
                        }
                    }
                    line.axis x1=(LEFT) x2=(WIDTH) y1=(TOP + PLOT_H) y2=(TOP + PLOT_H) {}
                }
                (data_table(self.lang, self.axis, self.labels, self.series, self.fmt))
            }
        }
    }
}

/// Grouped bars, one group per label.
pub fn bars(chart: &Chart) -> Markup {
    let (labels, series, fmt) = (chart.labels, chart.series, chart.fmt);
    let top = chart.top();
    let group_w = (WIDTH - LEFT) / labels.len().max(1) as f64;
    let bar_w = (group_w * 0.8 / series.len().max(1) as f64).clamp(1.0, 36.0);
    // Narrow bars sit in the middle of their group.
    let inset = (group_w - bar_w * series.len() as f64) / 2.0;
    let marks = html! {
        @for (i, label) in labels.iter().enumerate() {
            @for (k, s) in series.iter().enumerate() {
                @let v = s.values.get(i).copied().unwrap_or(0.0).max(0.0);
                @let h = PLOT_H * v / top;
                @let x = LEFT + group_w * i as f64 + inset + bar_w * k as f64;
                rect.bar.alt[s.style == Style::Alternate] x=(x) y=(TOP + PLOT_H - h) width=(bar_w) height=(h) {
                    title { (label) ": " (s.name) " " (fmt(v)) }
                }
            }
        }
    };
    chart.figure(false, marks, &|i| LEFT + group_w * (i as f64 + 0.5))
}

/// Lines over the labels.
pub fn lines(chart: &Chart) -> Markup {
    let top = chart.top();
    let plot_w = WIDTH - LEFT - 8.0;
    let steps = (chart.labels.len().max(2) - 1) as f64;
    let x = |i: usize| LEFT + plot_w * i as f64 / steps;
    let y = |v: f64| TOP + PLOT_H - PLOT_H * v.max(0.0) / top;
    let marks = html! {
        @for s in chart.series {
            @let points = s.values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect::<Vec<_>>().join(" ");
            polyline.line.alt[s.style == Style::Alternate] points=(points) {
                title { (s.name) }
            }
        }
    };
    chart.figure(true, marks, &x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_labels_and_always_the_last() {
        let shown: Vec<usize> = (0..30).filter(|i| labelled(*i, 30)).collect();
        assert_eq!(shown, vec![0, 5, 10, 15, 20, 25, 29]);
        assert_eq!((0..3).filter(|i| labelled(*i, 3)).count(), 3);
        assert!(labelled(0, 1));
    }

    #[test]
    fn the_axis_rounds_up_to_a_readable_top() {
        assert_eq!(axis_top(0.0, 1.0), 1.0);
        assert_eq!(axis_top(f64::NAN, 1.0), 1.0);
        assert_eq!(axis_top(0.7, 1.0), 1.0);
        assert_eq!(axis_top(3.0, 1.0), 5.0);
        assert_eq!(axis_top(120.0, 1.0), 200.0);
        assert_eq!(axis_top(1000.0, 1.0), 1000.0);
        assert_eq!(axis_top(5001.0, 1.0), 10000.0);
        // Money in cents: at least one euro.
        assert_eq!(axis_top(3.0, 100.0), 100.0);
        assert_eq!(axis_top(0.0, 100.0), 100.0);
    }

    fn chart<'a>(
        lang: Lang,
        axis: &'a str,
        labels: &'a [String],
        series: &'a [Series<'a>],
        fmt: &'a dyn Fn(f64) -> String,
    ) -> Chart<'a> {
        Chart {
            lang,
            id: "c",
            title: "Title",
            axis,
            labels,
            series,
            fmt,
            floor: 1.0,
        }
    }

    #[test]
    fn a_chart_carries_its_numbers_and_escapes_its_labels() {
        let labels = vec!["<b>".to_string(), "2".to_string()];
        let series = [Series {
            name: "issued & more",
            values: vec![3.0, 4.0],
            style: Style::Alternate,
        }];
        let fmt = |v: f64| format!("{v:.0}");
        let html = bars(&chart(Lang::En, "Day", &labels, &series, &fmt)).into_string();
        assert!(html.contains("&lt;b&gt;"), "{html}");
        assert!(!html.contains("<b>"));
        assert!(html.contains("issued &amp; more"));
        assert!(html.contains("<td class=\"num\">4</td>"), "{html}");
        assert!(html.contains("class=\"bar alt\""), "hatched bars: {html}");
        let html = lines(&chart(Lang::Nl, "Dag", &labels, &series, &fmt)).into_string();
        assert!(html.contains("Gegevens als tabel"));
        assert!(html.contains("class=\"line alt\""));
        // Counts up to 1 have no half-way label.
        let empty = [Series {
            name: "n",
            values: vec![0.0],
            style: Style::Solid,
        }];
        let html = bars(&chart(Lang::En, "D", &labels[..1], &empty, &fmt)).into_string();
        assert_eq!(html.matches("text-anchor=\"end\">").count(), 2, "{html}");
    }
}
