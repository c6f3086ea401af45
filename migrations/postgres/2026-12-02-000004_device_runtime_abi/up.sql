-- The model-runtime ABI each device's firmware provides, as its check-ins say (NULL: unknown).
ALTER TABLE devices ADD COLUMN runtime_abi INTEGER;
