ALTER TABLE rollout_devices DROP COLUMN bytes_sent; DROP INDEX streams_by_artifact; DROP TABLE streams;
