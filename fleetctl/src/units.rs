//! How figures read in fleetctl's tables: basis points as percentages, microseconds as
//! milliseconds, a device's validation as "accuracy / p99".

use serde_json::Value;

/// Basis points as a percentage with two decimals; `-` when absent.
pub fn percent_bp(bp: &Value) -> String {
    bp.as_f64()
        .map_or("-".into(), |b| format!("{:.2}%", b / 100.0))
}

/// Microseconds as milliseconds with two decimals; `-` when absent.
pub fn ms_us(us: &Value) -> String {
    us.as_f64()
        .map_or("-".into(), |u| format!("{:.2} ms", u / 1000.0))
}

/// A release a device rejected, with its figures: `1.2.0: 98.88% / 51.11 ms`; `-` when none.
pub fn rejected(v: &Value) -> String {
    if v.is_null() {
        return "-".into();
    }
    format!(
        "{}: {} / {}",
        v["version"].as_str().unwrap_or("?"),
        percent_bp(&v["accuracy_bp"]),
        ms_us(&v["p99_us"])
    )
}
