-- Devices, artifacts, assignments and reports (SQLite).
CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    board TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '',
    credential_sha256 TEXT NOT NULL,
    firmware_version TEXT,
    model_version TEXT,
    model_slot INTEGER,
    last_seen_ms BIGINT,
    last_accuracy_bp INTEGER,
    last_p99_us BIGINT
);
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    security_counter BIGINT NOT NULL,
    boards TEXT NOT NULL,
    envelope BLOB NOT NULL,
    payload_sha256 TEXT NOT NULL,
    payload_len BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE assignments (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices(id),
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id)
);
CREATE TABLE reports (
    device_id TEXT NOT NULL REFERENCES devices(id),
    seq BIGINT NOT NULL,
    release_id BIGINT NOT NULL,
    component TEXT NOT NULL,
    version TEXT NOT NULL,
    step TEXT NOT NULL,
    detail TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
