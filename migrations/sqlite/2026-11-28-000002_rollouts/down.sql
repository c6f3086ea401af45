DROP TABLE audit_log; DROP TABLE operator_tokens; DROP TABLE rollout_events; DROP TABLE rollout_devices; DROP TABLE rollouts; ALTER TABLE artifacts DROP COLUMN bad_reason;
