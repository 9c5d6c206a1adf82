DROP TABLE registrations;
DROP TABLE ticket_budgets;
DROP TABLE login_codes;
ALTER TABLE suites DROP COLUMN permanent_code_api;
