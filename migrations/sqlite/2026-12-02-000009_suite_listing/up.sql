-- What the install page shows of a suite beside its name: a description and a
-- logo (an http(s) URL, or none).
ALTER TABLE suites ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE suites ADD COLUMN logo_url TEXT;
