-- The FDL1 streams of each artifact (made at upload): compressed (no base) or a delta from an
-- earlier artifact's payload; the file is content-addressed in DATA/streams (SQLite).
CREATE TABLE streams (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    artifact_id BIGINT NOT NULL REFERENCES artifacts(id),
    base_artifact_id BIGINT REFERENCES artifacts(id),
    base_sha256 TEXT,
    len BIGINT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX streams_by_artifact ON streams (artifact_id);
-- Bytes the server sent each device of a rollout for its release (chunks and ranges).
ALTER TABLE rollout_devices ADD COLUMN bytes_sent BIGINT NOT NULL DEFAULT 0;
