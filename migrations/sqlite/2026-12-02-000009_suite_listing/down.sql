ALTER TABLE suites DROP COLUMN logo_url;
ALTER TABLE suites DROP COLUMN description;
