//! One agent's page: totals, the score's trend day by day, the newest
//! calls and trainings.

use std::error::Error;

use maud::html;
use plotters::prelude::*;

use super::charts::{figure, label_style, no_data, svg, BLUE, GRID, INK};
use super::detail::shell;
use super::format::{in_zone, zone_name};
use super::tables::activity_table;
use super::{score, thousands, ActivityRow};

/// The average score of one local day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayScore {
    /// 0 today, 1 yesterday, ….
    pub days_ago: i64,
    /// Average AI score of that day's scored real calls.
    pub average: f64,
    /// How many.
    pub calls: u64,
}

/// Everything one agent's page shows.
#[derive(Debug, Clone)]
pub struct AgentView {
    /// The agent's name (or id).
    pub agent: String,
    /// When it was read (Unix ms).
    pub now_ms: i64,
    /// Real calls in all.
    pub calls: u64,
    /// Their average score, all time.
    pub average_score: Option<f64>,
    /// The last 30 days, oldest first.
    pub trend: Vec<DayScore>,
    /// The newest real calls.
    pub recent_calls: Vec<ActivityRow>,
    /// The newest real trainings.
    pub recent_trainings: Vec<ActivityRow>,
    /// `CRM_TIME_ZONE`.
    pub time_zone: jiff::tz::TimeZone,
}

/// The page for an agent nothing names.
pub fn not_found(agent: &str) -> String {
    shell(
        "Not found",
        html! {
            h1 { "No agent “" (agent) "”" }
            p { "No real call or training names this agent." }
        },
    )
}

/// The page.
pub fn render(view: &AgentView) -> String {
    in_zone(&view.time_zone, || {
        let now = view.now_ms;
        shell(
            &view.agent,
            html! {
                h1 { (view.agent) }
                section.cards aria-label="Summary" {
                    div.card {
                        span.label { "Calls" }
                        b { (thousands(view.calls)) }
                        span.sub { "real calls, all time" }
                    }
                    div.card {
                        span.label { "Average AI score" }
                        b { (view.average_score.map_or_else(|| "–".to_owned(), score)) }
                        span.sub { "all time" }
                    }
                }
                section.charts.one {
                    (figure(
                        &format!("Average AI score per day, last 30 days ({})", zone_name()),
                        trend_chart(&view.trend),
                    ))
                }
                section {
                    h2 { "Newest calls" }
                    (activity_table(now, &view.recent_calls, "call", "No real calls."))
                }
                section {
                    h2 { "Newest trainings" }
                    (activity_table(now, &view.recent_trainings, "training", "No real trainings."))
                }
            },
        )
    })
}

fn trend_chart(days: &[DayScore]) -> Result<String, Box<dyn Error>> {
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(18)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(-29i64..0i64, 0f64..100f64)?;
        let day_label = |d: &i64| match d {
            0 => "today".to_owned(),
            d => format!("{d} d"),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&day_label)
            .label_style(label_style())
            .draw()?;
        if days.is_empty() {
            return no_data(root, "No scored calls in the last 30 days");
        }
        let points: Vec<(i64, f64)> = days
            .iter()
            .map(|d| (-d.days_ago, d.average.clamp(0.0, 100.0)))
            .collect();
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, BLUE.filled())))?;
        Ok(())
    })
}
