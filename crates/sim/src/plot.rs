//! The run as an SVG a person reads at a glance: one row per experiment
//! with the sampling percentage over time (failing and inconclusive ticks
//! marked, EndTime moves drawn), the shadow's and production's p99 and their
//! 5xx rates over the hour before each tick.

use std::path::Path;

use chrono::{DateTime, Utc};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::runner::{ExperimentRun, SimulationOutcome, TickRecord};
use super::world::VariantObservation;
use shadowpilot_core::plan::Action;
use shadowpilot_core::report::VerdictKind;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw {path}: {message}")]
    Draw { path: String, message: String },
}

const WIDTH: u32 = 1500;
const ROW: u32 = 200;
const HEADER: u32 = 56;

const PRODUCTION: RGBColor = RGBColor(31, 119, 180);
const SHADOW: RGBColor = RGBColor(255, 127, 14);
const SAMPLING: RGBColor = RGBColor(40, 40, 40);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const INCONCLUSIVE: RGBColor = RGBColor(188, 189, 34);
const END_TIME: RGBColor = RGBColor(148, 103, 189);

/// Draws the outcome to `path` as SVG.
pub fn write_svg(outcome: &SimulationOutcome, path: &Path) -> Result<(), PlotError> {
    let height = HEADER + ROW * outcome.experiments.len().max(1) as u32;
    let shown = path.display().to_string();
    let fail = |message: String| PlotError::Draw {
        path: shown.clone(),
        message,
    };
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    draw(outcome, &root).map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(outcome: &SimulationOutcome, root: &DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    header.draw_text(
        &format!(
            "{} — seed {}, schedule {}, {} ticks from {} to {}",
            outcome.scenario,
            outcome.seed,
            outcome.schedule,
            outcome.ticks,
            outcome.start.format("%Y-%m-%d %H:%M"),
            outcome.finished_at.format("%Y-%m-%d %H:%M")
        ),
        &("sans-serif", 18).into_font().color(&BLACK),
        (10, 6),
    )?;
    let legend = [
        ("— sampling %", SAMPLING),
        ("● fail", FAIL),
        ("● inconclusive", INCONCLUSIVE),
        ("| EndTime (▲ when moved)", END_TIME),
        ("— production", PRODUCTION),
        ("— shadow", SHADOW),
    ];
    let mut x = 10;
    for (label, color) in legend {
        header.draw_text(
            label,
            &("sans-serif", 13).into_font().color(&color),
            (x, 32),
        )?;
        x += 12 + 8 * label.chars().count() as i32;
    }
    header.draw_text(
        "x: days since the scenario start; latency and 5xx over the hour before each tick, hidden below 20 requests",
        &("sans-serif", 12)
            .into_font()
            .color(&RGBColor(100, 100, 100)),
        (900, 32),
    )?;

    let days = days_between(outcome.start, outcome.finished_at).max(1.0 / 24.0);
    let rows = body.split_evenly((outcome.experiments.len().max(1), 1));
    for (area, run) in rows.iter().zip(&outcome.experiments) {
        let panels = area.split_evenly((1, 4));
        sampling_panel(&panels[0], outcome.start, days, run)?;
        observed_panel(
            &panels[1],
            outcome.start,
            days,
            run,
            "p99 model latency, ms",
            1.0,
            |o| o.p99_ms,
        )?;
        observed_panel(
            &panels[2],
            outcome.start,
            days,
            run,
            "5xx rate, %",
            0.1,
            |o| o.error_5xx_percent,
        )?;
        interval_panel(&panels[3], outcome.start, days, run)?;
    }
    Ok(())
}

type PanelChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One panel's axes: days across, `0..top` up, light grid.
fn panel_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    days: f64,
    top: f64,
) -> Result<PanelChart<'a, 'b>, DrawingAreaErrorKind<<SVGBackend<'b> as DrawingBackend>::ErrorType>>
{
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 14))
        .margin(6)
        .x_label_area_size(20)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..days, 0f64..top)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(5)
        .x_label_formatter(&|d| format!("{d:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    Ok(chart)
}

/// The judge's own view of the first latency ratio check: each tick's
/// interval as a bar (grey while inconclusive, red on a fail, green on a
/// pass), its estimate as a dot, and the limit as a line.
fn interval_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    start: DateTime<Utc>,
    days: f64,
    run: &ExperimentRun,
) -> DrawResult {
    use shadowpilot_core::evidence::Form;
    use shadowpilot_core::judge::Outcome;
    let mut bars = Vec::new();
    let mut limit = None;
    let mut title = "judge: latency ratio interval".to_string();
    for tick in &run.ticks {
        let Some(check) = tick
            .entry
            .checks()
            .iter()
            .find(|c| matches!(c.form, Form::LatencyRatio { .. }))
        else {
            continue;
        };
        if limit.is_none() {
            title = format!("judge: {} ratio interval vs limit", check.id.as_str());
        }
        limit = Some(check.limit);
        if let (Some(value), Some(lower), Some(upper)) = (check.value, check.lower, check.upper) {
            let x = days_between(start, tick.at);
            bars.push((x, value, lower.max(0.0), upper.min(4.0), check.outcome));
        }
    }
    let top = bars.iter().map(|b| b.3).chain(limit).fold(1.5f64, f64::max) * 1.05;
    let mut chart = panel_chart(area, &title, days, top)?;
    for (x, value, lower, upper, outcome) in &bars {
        let color = match outcome {
            Outcome::Fail => FAIL,
            Outcome::Pass => RGBColor(40, 150, 60),
            Outcome::Inconclusive => RGBColor(170, 170, 170),
        };
        chart.draw_series(LineSeries::new(
            [(*x, *lower), (*x, *upper)],
            color.stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Circle::new(
            (*x, *value),
            1,
            color.filled(),
        )))?;
    }
    if let Some(limit) = limit {
        chart.draw_series(LineSeries::new(
            [(0.0, limit), (days, limit)],
            END_TIME.stroke_width(1),
        ))?;
    }
    Ok(())
}

fn days_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_seconds() as f64 / 86_400.0
}

/// Consecutive ticks with a value, as separate lines (no line across gaps).
fn segments(
    run: &ExperimentRun,
    start: DateTime<Utc>,
    value: impl Fn(&TickRecord) -> Option<f64>,
) -> Vec<Vec<(f64, f64)>> {
    let mut all = Vec::new();
    let mut current = Vec::new();
    for tick in &run.ticks {
        match value(tick) {
            Some(v) => current.push((days_between(start, tick.at), v)),
            None if !current.is_empty() => all.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

fn sampling_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    start: DateTime<Utc>,
    days: f64,
    run: &ExperimentRun,
) -> DrawResult {
    let title = format!(
        "{}{} — sampling %",
        run.name,
        if run.held { " (hold)" } else { "" }
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 14))
        .margin(6)
        .x_label_area_size(20)
        .y_label_area_size(34)
        .build_cartesian_2d(0f64..days, 0f64..110f64)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|d| format!("{d:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    // The sampling percentage in force, as steps.
    let end = start + chrono::Duration::seconds((days * 86_400.0) as i64);
    let mut steps = Vec::new();
    for (i, (from, percentage)) in run.sampling_history.iter().enumerate() {
        let x = days_between(start, *from).max(0.0);
        if i > 0 {
            if let Some(&(_, previous)) = steps.last() {
                steps.push((x, previous));
            }
        }
        steps.push((x, f64::from(*percentage)));
    }
    // Up to the end of the experiment, or of the run if it was still going.
    let last_end = run
        .end_time_history
        .last()
        .map_or(end, |(_, end_time)| (*end_time).min(end));
    if let Some(&(_, last)) = steps.last() {
        steps.push((days_between(start, last_end), last));
    }
    chart.draw_series(LineSeries::new(steps, SAMPLING.stroke_width(2)))?;
    // EndTime: where it was set, and a marker when it moved.
    for (i, (at, end_time)) in run.end_time_history.iter().enumerate() {
        let x = days_between(start, *end_time);
        if x <= days {
            chart.draw_series(LineSeries::new(
                [(x, 0.0), (x, 110.0)],
                END_TIME.mix(if i == 0 { 0.4 } else { 0.8 }),
            ))?;
        }
        if i > 0 {
            chart.draw_series([TriangleMarker::new(
                (days_between(start, *at), 106.0),
                5,
                END_TIME.filled(),
            )])?;
        }
    }
    // Failing and inconclusive ticks on the line.
    for (verdict, color) in [
        (VerdictKind::Inconclusive, INCONCLUSIVE),
        (VerdictKind::Fail, FAIL),
    ] {
        let points: Vec<(f64, f64)> = run
            .ticks
            .iter()
            .filter(|t| t.verdict() == verdict)
            .map(|t| (days_between(start, t.at), f64::from(sampling_before(t))))
            .collect();
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 2, color.filled())),
        )?;
    }
    Ok(())
}

/// The percentage the tick judged (before its own write).
fn sampling_before(tick: &TickRecord) -> u8 {
    tick.actions()
        .iter()
        .find_map(|a| match a {
            Action::SetSampling { from, .. } if tick.applied() => Some(*from),
            _ => None,
        })
        .unwrap_or(tick.sampling)
}

/// What a two-line panel shows: a title, a value per variant and tick, and
/// the least top of the y axis.
struct TwoLines<P, S> {
    title: &'static str,
    production: P,
    shadow: S,
    floor: f64,
}

fn two_lines<P, S>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    start: DateTime<Utc>,
    days: f64,
    run: &ExperimentRun,
    lines: TwoLines<P, S>,
) -> DrawResult
where
    P: Fn(&TickRecord) -> Option<f64>,
    S: Fn(&TickRecord) -> Option<f64>,
{
    let production = segments(run, start, lines.production);
    let shadow = segments(run, start, lines.shadow);
    let top = production
        .iter()
        .chain(&shadow)
        .flatten()
        .map(|(_, v)| *v)
        .fold(lines.floor, f64::max)
        * 1.1;
    let mut chart = panel_chart(area, lines.title, days, top)?;
    for line in production {
        chart.draw_series(LineSeries::new(line, PRODUCTION.stroke_width(1)))?;
    }
    for line in shadow {
        chart.draw_series(LineSeries::new(line, SHADOW.stroke_width(1)))?;
    }
    Ok(())
}

/// A p99 or a rate over fewer requests than this is noise, not a line.
const MIN_PLOTTED_REQUESTS: u64 = 20;

fn enough(observed: VariantObservation) -> bool {
    observed.invocations >= MIN_PLOTTED_REQUESTS
}

/// Shadow against production for one observed value, hidden where a tick
/// saw too few requests for it to mean anything.
fn observed_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    start: DateTime<Utc>,
    days: f64,
    run: &ExperimentRun,
    title: &'static str,
    floor: f64,
    value: fn(&VariantObservation) -> Option<f64>,
) -> DrawResult {
    let shown =
        move |observed: VariantObservation| enough(observed).then(|| value(&observed)).flatten();
    let lines = TwoLines {
        title,
        production: move |t: &TickRecord| shown(t.observed.production),
        shadow: move |t: &TickRecord| shown(t.observed.shadow),
        floor,
    };
    two_lines(area, start, days, run, lines)
}
