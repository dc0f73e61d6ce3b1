//! The alert's chart: an account's weekly activity against its expected
//! level, drawn to PNG with plotters and a font lull carries (no system
//! fonts, no fontconfig on the server).

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::detect::Weekly;
use crate::types::Day;

/// DejaVu Sans (license in assets/fonts/LICENSE-DejaVu.txt).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_NAME: &str = "lull-sans";

/// Pixels: wide enough for twelve labelled weeks, small enough that a
/// digest of ten accounts stays a few hundred kilobytes.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 240;

const BAR: RGBColor = RGBColor(96, 125, 139);
const BAR_QUIET: RGBColor = RGBColor(230, 81, 0);
const EXPECTED: RGBColor = RGBColor(30, 136, 229);
const MARK: RGBColor = RGBColor(198, 40, 40);

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("no whole week of history to chart")]
    NoData,
    #[error("drawing the chart: {0}")]
    Draw(String),
}

fn draw_err(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

fn register_font() -> Result<(), ChartError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font is not a valid TrueType font".to_string())
    })
    .clone()
    .map_err(ChartError::Draw)
}

/// Weekly bars (orange from the week the silence began), the expected
/// level as a line over a band down to the drop line (below the band is
/// "silent" territory), and a marker at `silent_since`.
pub fn weekly_png(w: &Weekly, silent_since: Option<Day>) -> Result<Vec<u8>, ChartError> {
    register_font()?;
    if w.starts.is_empty() {
        return Err(ChartError::NoData);
    }
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, w, silent_since)?;
        root.present().map_err(draw_err)?;
    }
    let mut png = Vec::with_capacity(16 * 1024);
    {
        let mut enc = png::Encoder::new(&mut png, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        let mut writer = enc.write_header().map_err(draw_err)?;
        writer.write_image_data(&rgb).map_err(draw_err)?;
    }
    Ok(png)
}

/// The same chart as inline SVG (the console's account page), `width` by
/// [`HEIGHT`] pixels; its text takes the page's font.
pub fn weekly_svg(w: &Weekly, silent_since: Option<Day>, width: u32) -> Result<String, ChartError> {
    register_font()?;
    if w.starts.is_empty() {
        return Err(ChartError::NoData);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        draw(&root, w, silent_since)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    w: &Weekly,
    silent_since: Option<Day>,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let n = w.starts.len();
    let top = w
        .observed
        .iter()
        .chain(&w.expected)
        .fold(1.0f64, |m, v| m.max(*v))
        * 1.15;
    // Where the silence began, in week units (bar i spans i-0.5..i+0.5).
    let mark = silent_since.map(|s| (s.0 - w.starts[0].0) as f64 / 7.0 - 0.5);
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
        .map_err(draw_err)?;
    let starts = &w.starts;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_labels(n.min(12))
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            starts
                .get(i as usize)
                .map(|d| d.date().format("%b %d").to_string())
                .unwrap_or_default()
        })
        .y_labels(5)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT_NAME, 12).into_font())
        .axis_desc_style((FONT_NAME, 12).into_font())
        .y_desc("events / week")
        .draw()
        .map_err(draw_err)?;
    // The band between the drop line and the expected level.
    let mut band: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, w.expected[i])).collect();
    band.extend((0..n).rev().map(|i| (i as f64, w.drop_line[i])));
    chart
        .draw_series(std::iter::once(Polygon::new(band, EXPECTED.mix(0.15))))
        .map_err(draw_err)?;
    chart
        .draw_series((0..n).map(|i| {
            let x = i as f64;
            let quiet = mark.is_some_and(|m| x + 0.5 > m);
            let color = if quiet { BAR_QUIET } else { BAR };
            Rectangle::new([(x - 0.32, 0.0), (x + 0.32, w.observed[i])], color.filled())
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(LineSeries::new(
            (0..n).map(|i| (i as f64, w.expected[i])),
            EXPECTED.stroke_width(2),
        ))
        .map_err(draw_err)?
        .label("expected")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], EXPECTED.stroke_width(2)));
    if let Some(m) = mark.filter(|m| *m > -0.5 && *m < n as f64 - 0.5) {
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(m, 0.0), (m, top)],
                MARK.stroke_width(2),
            )))
            .map_err(draw_err)?
            .label("quiet since")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], MARK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT_NAME, 12).into_font())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.2))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png_of_the_weeks_with_the_marker() {
        let starts: Vec<Day> = (0..12).map(|i| Day(20_000 + 7 * i)).collect();
        let w = Weekly {
            observed: (0..12).map(|i| if i < 8 { 20.0 } else { 1.0 }).collect(),
            expected: vec![19.0; 12],
            drop_line: vec![3.8; 12],
            starts,
        };
        let png = weekly_png(&w, Some(Day(20_000 + 7 * 8 + 2))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 2_000 && png.len() < 100_000, "{}", png.len());
        assert!(matches!(
            weekly_png(&Weekly::default(), None),
            Err(ChartError::NoData)
        ));
    }
}
