//! Log lines on stderr: one JSON object per line (time, level, event, fields), the same shape
//! as the fleet server's, so one collector reads both.

use std::time::{SystemTime, UNIX_EPOCH};

fn emit(level: &str, event: &str, fields: &[(&str, String)]) {
    let mut line = serde_json::Map::new();
    let ts_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    line.insert("ts_ms".into(), ts_ms.into());
    line.insert("level".into(), level.into());
    line.insert("event".into(), event.into());
    for (k, v) in fields {
        line.insert((*k).into(), v.clone().into());
    }
    eprintln!("{}", serde_json::Value::Object(line));
}

pub(crate) fn info(event: &str, fields: &[(&str, String)]) {
    emit("info", event, fields);
}

pub(crate) fn warn(event: &str, fields: &[(&str, String)]) {
    emit("warn", event, fields);
}
