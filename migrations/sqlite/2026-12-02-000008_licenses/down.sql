DROP TABLE license_sync;
DROP TABLE license_apps;
DROP TABLE license_unlicensed;
DROP TABLE license_codes;
DROP TABLE license_orders;
