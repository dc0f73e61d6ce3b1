//! The backtest report: one self-contained HTML page.

use crate::backtest::Backtest;
use crate::detect::DetectConfig;

pub fn render(_b: &Backtest, _config: &DetectConfig) -> String {
    String::new()
}
