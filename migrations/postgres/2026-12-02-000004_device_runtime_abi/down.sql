ALTER TABLE devices DROP COLUMN runtime_abi;
