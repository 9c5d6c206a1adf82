DROP TABLE sealing_state;
DROP TABLE audit_log;
ALTER TABLE providers DROP COLUMN version;
ALTER TABLE providers DROP COLUMN name;
ALTER TABLE suites DROP COLUMN version;
ALTER TABLE suites DROP COLUMN enabled;
ALTER TABLE suites DROP COLUMN name;
ALTER TABLE suites DROP COLUMN kind;
