-- Rollouts, their devices and events; operator tokens with roles; the audit log; bad releases.
-- Additive only: the previous server version keeps working against this schema.
ALTER TABLE artifacts ADD COLUMN bad_reason TEXT;
CREATE TABLE rollouts (
    id BIGSERIAL PRIMARY KEY,
    artifact_id BIGINT NOT NULL REFERENCES artifacts(id),
    selector TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    stage INTEGER NOT NULL,
    stage_started_ms BIGINT NOT NULL,
    halted_gate TEXT,
    lease_owner TEXT,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE rollout_devices (
    rollout_id BIGINT NOT NULL REFERENCES rollouts(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    stage INTEGER NOT NULL,
    state TEXT NOT NULL,
    previous_version TEXT,
    previous_accuracy_bp INTEGER,
    accuracy_bp INTEGER,
    p99_us BIGINT,
    finished_ms BIGINT,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_by_device ON rollout_devices (device_id, state);
-- Every device request looks its credential up.
CREATE UNIQUE INDEX devices_by_credential ON devices (credential_sha256);
CREATE TABLE rollout_events (
    id BIGSERIAL PRIMARY KEY,
    rollout_id BIGINT NOT NULL REFERENCES rollouts(id),
    at_ms BIGINT NOT NULL,
    stage INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX rollout_events_by_rollout ON rollout_events (rollout_id, id);
CREATE TABLE operator_tokens (
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
