//! Structured logs: one JSON object per line on stderr (time, level, event, fields).

use crate::store::now_ms;

fn emit(level: &str, event: &str, fields: &[(&str, String)]) {
    let mut line = serde_json::Map::new();
    line.insert("ts_ms".into(), now_ms().into());
    line.insert("level".into(), level.into());
    line.insert("event".into(), event.into());
    for (k, v) in fields {
        line.insert((*k).into(), v.clone().into());
    }
    eprintln!("{}", serde_json::Value::Object(line));
}

pub fn info(event: &str, fields: &[(&str, String)]) {
    emit("info", event, fields);
}

pub fn warn(event: &str, fields: &[(&str, String)]) {
    emit("warn", event, fields);
}
