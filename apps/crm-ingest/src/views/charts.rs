//! The dashboard's charts: SVG drawn by plotters' SVG backend (which
//! escapes its text), wrapped in a figure with its caption.

use std::error::Error;

use maud::{html, Markup, PreEscaped};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::*;

/// Size of every chart, in SVG units; CSS scales it to the column.
pub(super) const CHART_SIZE: (u32, u32) = (520, 250);
pub(super) const FONT: &str = "sans-serif";
pub(super) const INK: RGBColor = RGBColor(0x3d, 0x46, 0x54);
pub(super) const MUTED: RGBColor = RGBColor(0x7a, 0x83, 0x90);
pub(super) const GRID: RGBColor = RGBColor(0xe6, 0xe9, 0xee);
pub(super) const GREEN: RGBColor = RGBColor(0x2e, 0x9e, 0x5b);
pub(super) const AMBER: RGBColor = RGBColor(0xd6, 0x9e, 0x2e);
pub(super) const RED: RGBColor = RGBColor(0xd6, 0x45, 0x45);
pub(super) const BLUE: RGBColor = RGBColor(0x3b, 0x6f, 0xd6);

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

pub(super) fn figure(caption: &str, svg: Result<String, Box<dyn Error>>) -> Markup {
    figure_with_legend(caption, svg, html! {})
}

pub(super) fn figure_with_legend(
    caption: &str,
    svg: Result<String, Box<dyn Error>>,
    legend: Markup,
) -> Markup {
    html! {
        figure {
            figcaption { (caption) " " span.legend { (legend) } }
            @match svg {
                // plotters' SVG backend escapes every text and attribute.
                Ok(svg) => (PreEscaped(svg)),
                Err(error) => p.muted { "The chart could not be drawn: " (error.to_string()) },
            }
        }
    }
}

pub(super) fn svg(draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<String, Box<dyn Error>> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(out)
}

pub(super) fn no_data(root: &Area<'_>, text: &str) -> DrawResult {
    let (w, h) = CHART_SIZE;
    let style = TextStyle::from((FONT, 19).into_font())
        .color(&MUTED)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(text, &style, (w as i32 / 2 + 20, h as i32 / 2 - 10))?;
    Ok(())
}

pub(super) fn label_style() -> TextStyle<'static> {
    TextStyle::from((FONT, 18).into_font()).color(&INK)
}

pub(super) fn count_label(n: &u64) -> String {
    thousands(*n)
}

pub(super) fn minutes_label(m: &i64) -> String {
    match *m {
        0 => "now".to_owned(),
        m => format!("{m} min"),
    }
}

/// A y axis top that leaves room above the highest value.
pub(super) fn y_top(max: u64) -> u64 {
    (max + max / 8).max(max + 1).max(4)
}

pub(super) fn deliveries_chart(
    now: i64,
    minutes: &[MinuteCounts],
) -> Result<String, Box<dyn Error>> {
    let window = usize::try_from(WINDOW_MINUTES).unwrap_or(60);
    // slots[i]: the minute `i - 59` minutes from now's.
    let mut slots = vec![[0u64; 3]; window];
    let this_minute = now.div_euclid(60_000);
    for m in minutes {
        let back = this_minute - m.minute_ms.div_euclid(60_000);
        if (0..WINDOW_MINUTES).contains(&back) {
            let slot = &mut slots[window - 1 - usize::try_from(back).unwrap_or(0)];
            slot[0] += m.accepted;
            slot[1] += m.duplicate;
            slot[2] += m.rejected;
        }
    }
    let max = slots.iter().flatten().copied().max().unwrap_or(0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(18)
            .x_label_area_size(28)
            .y_label_area_size(58)
            .build_cartesian_2d(-(WINDOW_MINUTES - 1)..0i64, 0..y_top(max))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(7)
            .y_labels(5)
            .y_label_formatter(&count_label)
            .x_label_formatter(&minutes_label)
            .label_style(label_style())
            .draw()?;
        if max == 0 {
            return no_data(root, "No deliveries in the last hour");
        }
        // Drawn in this order so that rejections stay on top; the legend
        // is HTML, in the figure's caption.
        for (color, index) in [(GREEN, 0), (AMBER, 1), (RED, 2)] {
            let points = slots.iter().enumerate().map(|(i, s)| {
                (
                    i64::try_from(i).unwrap_or(0) - (WINDOW_MINUTES - 1),
                    s[index],
                )
            });
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        }
        Ok(())
    })
}

/// Most reasons drawn; the rest are summed as "other".
pub(super) const MAX_REASONS: usize = 6;

pub(super) fn rejections_chart(reasons: &[ReasonCount]) -> Result<String, Box<dyn Error>> {
    let mut sorted: Vec<(String, u64)> = reasons
        .iter()
        .filter(|r| r.count > 0)
        .map(|r| (r.reason.clone(), r.count))
        .collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if sorted.len() > MAX_REASONS {
        let other: u64 = sorted[MAX_REASONS - 1..].iter().map(|r| r.1).sum();
        sorted.truncate(MAX_REASONS - 1);
        sorted.push(("other".to_owned(), other));
    }
    let max = sorted.iter().map(|r| r.1).max().unwrap_or(0);
    // Rows from the top: row i spans y in [n - i - 1, n - i].
    let rows = sorted.len().max(3);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(22)
            .x_label_area_size(28)
            .y_label_area_size(10)
            .build_cartesian_2d(0..y_top(max), 0f64..rows as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(5)
            .x_label_formatter(&count_label)
            .label_style(label_style())
            .draw()?;
        if sorted.is_empty() {
            return no_data(root, "Nothing rejected");
        }
        for (i, (reason, count)) in sorted.iter().enumerate() {
            let top = (rows - i) as f64;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0, top - 0.5), (*count, top - 0.9)],
                RED.mix(0.85).filled(),
            )))?;
            let text = format!("{reason} · {}", thousands(*count));
            chart.draw_series(std::iter::once(Text::new(
                text,
                (0, top - 0.1),
                label_style().pos(Pos::new(HPos::Left, VPos::Top)),
            )))?;
        }
        Ok(())
    })
}

pub(super) fn score_chart(buckets: &[u64; 10]) -> Result<String, Box<dyn Error>> {
    let max = buckets.iter().copied().max().unwrap_or(0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(18)
            .x_label_area_size(28)
            .y_label_area_size(58)
            .build_cartesian_2d(0u32..100u32, 0..y_top(max))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(11)
            .y_labels(5)
            .y_label_formatter(&count_label)
            .label_style(label_style())
            .draw()?;
        if max == 0 {
            return no_data(root, "No scored calls yet");
        }
        chart.draw_series(buckets.iter().zip(0u32..).map(|(count, i)| {
            Rectangle::new(
                [(i * 10 + 1, 0), (i * 10 + 9, *count)],
                BLUE.mix(0.8).filled(),
            )
        }))?;
        Ok(())
    })
}

pub(super) fn backlog_chart(now: i64, samples: &[BacklogSample]) -> Result<String, Box<dyn Error>> {
    let window_ms = WINDOW_MINUTES * 60_000;
    let mut points: Vec<(f64, u64)> = samples
        .iter()
        .filter(|s| (0..=window_ms).contains(&now.saturating_sub(s.at_ms)))
        .map(|s| ((s.at_ms - now) as f64 / 60_000.0, s.waiting))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let max = points.iter().map(|p| p.1).max().unwrap_or(0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(18)
            .x_label_area_size(28)
            .y_label_area_size(58)
            .build_cartesian_2d(-(WINDOW_MINUTES as f64)..0f64, 0..y_top(max))?;
        let minutes = |m: &f64| minutes_label(&(m.round() as i64));
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(7)
            .y_labels(5)
            .y_label_formatter(&count_label)
            .x_label_formatter(&minutes)
            .label_style(label_style())
            .draw()?;
        if points.is_empty() {
            return no_data(root, "No samples yet");
        }
        let mut outline: Vec<(f64, u64)> = Vec::with_capacity(points.len() + 2);
        outline.push((points[0].0, 0));
        outline.extend(points.iter().copied());
        outline.push((points[points.len() - 1].0, 0));
        chart.draw_series(std::iter::once(Polygon::new(
            outline,
            BLUE.mix(0.15).filled(),
        )))?;
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))?;
        if max == 0 {
            no_data(root, "Caught up: nothing waiting")?;
        }
        Ok(())
    })
}
