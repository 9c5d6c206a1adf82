-- Interface licenses (接口调用许可), per provider: a corpid is the provider's open
-- corpid, the same for all its suites. WeCom's times (`*_time`) are Unix seconds as
-- WeCom gives them; `updated_at` and the like are our own Unix milliseconds.

-- Orders bought for a corp. `order_status` is WeCom's (0 unpaid, 1 paid, 2 cancelled,
-- 3 expired, 4 refund requested, 5 refunded, 6 refund rejected, 7 invalid).
CREATE TABLE license_orders (
    provider_corpid TEXT NOT NULL,
    order_id TEXT NOT NULL,
    corpid TEXT NOT NULL,
    order_type INTEGER NOT NULL,
    order_status INTEGER NOT NULL,
    base_count BIGINT NOT NULL,
    external_contact_count BIGINT NOT NULL,
    months BIGINT NOT NULL,
    days BIGINT NOT NULL,
    price BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    pay_time BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider_corpid, order_id)
);
CREATE INDEX license_orders_by_corp ON license_orders (provider_corpid, corpid);

-- Active codes and who holds them. `status` is WeCom's (1 unbound, 2 bound, 3 expired,
-- 4 pending transfer, 5 merged, 6 shared), or 0: void, its order refunded unused.
-- `type` 1 base, 2 interworking (互通). `expiry_notice` is the "DAYS:EXPIRE_TIME" of
-- the last license_expiring sent for it, so each threshold is announced once.
CREATE TABLE license_codes (
    provider_corpid TEXT NOT NULL,
    active_code TEXT NOT NULL,
    corpid TEXT NOT NULL,
    order_id TEXT,
    account_type INTEGER NOT NULL,
    status INTEGER NOT NULL,
    userid TEXT,
    active_time BIGINT,
    expire_time BIGINT,
    expiry_notice TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider_corpid, active_code)
);
CREATE INDEX license_codes_by_corp ON license_codes (provider_corpid, corpid);

-- Members WeCom reported as unlicensed (unlicensed_notify) and not activated since.
CREATE TABLE license_unlicensed (
    provider_corpid TEXT NOT NULL,
    corpid TEXT NOT NULL,
    userid TEXT NOT NULL,
    noticed_at BIGINT NOT NULL,
    PRIMARY KEY (provider_corpid, corpid, userid)
);

-- The app's license state per corp (get_app_license_info): `license_status` 0 check
-- off, 1 on; the trial (WeCom's `trail_info`); auto-activation when last read.
CREATE TABLE license_apps (
    suite_id TEXT NOT NULL,
    corpid TEXT NOT NULL,
    license_status INTEGER NOT NULL,
    trial_start_time BIGINT NOT NULL,
    trial_end_time BIGINT NOT NULL,
    license_check_time BIGINT NOT NULL,
    auto_active_status INTEGER,
    trial_notice TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (suite_id, corpid)
);

-- Where `licenses sync` stands per corp: the step and WeCom's cursor within it, so
-- an interrupted run resumes there. `finished_at` set: the corp was synced whole.
CREATE TABLE license_sync (
    suite_id TEXT NOT NULL,
    corpid TEXT NOT NULL,
    step TEXT NOT NULL,
    cursor TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (suite_id, corpid)
);
