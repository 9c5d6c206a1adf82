//! Table definitions shared by both backends (see `migrations/`).

diesel::table! {
    providers (provider_corpid) {
        provider_corpid -> Text,
        provider_secret -> Text,
        callback_token -> Nullable<Text>,
        encoding_aes_key -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        name -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    suites (suite_id) {
        suite_id -> Text,
        provider_corpid -> Text,
        suite_secret -> Text,
        callback_token -> Text,
        encoding_aes_key -> Text,
        ticket -> Nullable<Text>,
        ticket_updated_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        kind -> Text,
        name -> Text,
        enabled -> Bool,
        version -> BigInt,
        permanent_code_api -> Text,
        description -> Text,
        logo_url -> Nullable<Text>,
    }
}

diesel::table! {
    corps (suite_id, corpid) {
        suite_id -> Text,
        corpid -> Text,
        corp_name -> Text,
        agent_id -> Nullable<BigInt>,
        permanent_code -> Nullable<Text>,
        status -> Text,
        auth_info -> Text,
        auth_error -> Nullable<Text>,
        authorized_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        provider_corpid -> Text,
        suite_id -> Nullable<Text>,
        corpid -> Nullable<Text>,
        kind -> Text,
        dedupe_key -> Text,
        ordering_key -> Nullable<Text>,
        plaintext -> Nullable<Text>,
        fields -> Text,
        received_at -> BigInt,
        status -> Text,
        processed_at -> Nullable<BigInt>,
        attempts -> Integer,
        next_attempt_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<BigInt>,
        request_id -> Nullable<Text>,
    }
}

diesel::table! {
    /// SQLite only: the dedupe keys of stored events (see `store::event_keys`).
    event_keys (dedupe_key) {
        dedupe_key -> Text,
    }
}

diesel::table! {
    /// SQLite only: one row, up to which event every key is in `event_keys`.
    event_key_merges (singleton) {
        singleton -> Integer,
        through_id -> BigInt,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    tokens (scope, key) {
        scope -> Text,
        key -> Text,
        access_token -> Nullable<Text>,
        expires_at -> Nullable<BigInt>,
        refreshing_until -> Nullable<BigInt>,
        refresh_holder -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    auth_codes (suite_id, code_hash) {
        suite_id -> Text,
        code_hash -> Text,
        status -> Text,
        corpid -> Nullable<Text>,
        claimed_until -> BigInt,
        created_at -> BigInt,
        holder -> Nullable<Text>,
        sent_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    install_states (state) {
        state -> Text,
        suite_id -> Text,
        created_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    id_mappings (provider_corpid, kind, corpid, source) {
        provider_corpid -> Text,
        kind -> Text,
        corpid -> Text,
        source -> Text,
        target -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    identities (id) {
        id -> BigInt,
        provider_corpid -> Text,
        unionid -> Text,
        openid -> Text,
        subject_type -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    identity_links (identity_id, corpid) {
        identity_id -> BigInt,
        corpid -> Text,
        suite_id -> Text,
        external_userid -> Nullable<Text>,
        pending_id -> Nullable<Text>,
        pending_since -> Nullable<BigInt>,
        status -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    pending_matches (suite_id, corpid, external_userid) {
        suite_id -> Text,
        corpid -> Text,
        external_userid -> Text,
        attempts -> Integer,
        not_before -> BigInt,
    }
}

diesel::joinable!(identity_links -> identities (identity_id));

diesel::allow_tables_to_appear_in_same_query!(
    providers,
    suites,
    corps,
    events,
    leases,
    tokens,
    auth_codes,
    install_states,
    id_mappings,
    identities,
    identity_links,
    pending_matches
);

diesel::table! {
    webhooks (id) {
        id -> Text,
        url -> Text,
        kinds -> Text,
        suite_id -> Nullable<Text>,
        enabled -> Bool,
        secret -> Text,
        cursor -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    webhook_deliveries (webhook_id, event_id) {
        webhook_id -> Text,
        event_id -> BigInt,
        status -> Text,
        attempts -> Integer,
        last_status -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        next_attempt_at -> Nullable<BigInt>,
        first_attempt_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Text,
        details -> Text,
    }
}

diesel::table! {
    sealing_state (id) {
        id -> Integer,
        key_id -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    api_keys (name) {
        name -> Text,
        key_hash -> Text,
        scopes -> Text,
        suites -> Nullable<Text>,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    license_orders (provider_corpid, order_id) {
        provider_corpid -> Text,
        order_id -> Text,
        corpid -> Text,
        order_type -> Integer,
        order_status -> Integer,
        base_count -> BigInt,
        external_contact_count -> BigInt,
        months -> BigInt,
        days -> BigInt,
        price -> BigInt,
        create_time -> BigInt,
        pay_time -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    login_codes (kind, owner, code_hash) {
        kind -> Text,
        owner -> Text,
        code_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    license_codes (provider_corpid, active_code) {
        provider_corpid -> Text,
        active_code -> Text,
        corpid -> Text,
        order_id -> Nullable<Text>,
        account_type -> Integer,
        status -> Integer,
        userid -> Nullable<Text>,
        active_time -> Nullable<BigInt>,
        expire_time -> Nullable<BigInt>,
        expiry_notice -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    ticket_budgets (counter) {
        counter -> Text,
        fetched_at -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    license_unlicensed (provider_corpid, corpid, userid) {
        provider_corpid -> Text,
        corpid -> Text,
        userid -> Text,
        noticed_at -> BigInt,
    }
}

diesel::table! {
    license_apps (suite_id, corpid) {
        suite_id -> Text,
        corpid -> Text,
        license_status -> Integer,
        trial_start_time -> BigInt,
        trial_end_time -> BigInt,
        license_check_time -> BigInt,
        auto_active_status -> Nullable<Integer>,
        trial_notice -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    license_sync (suite_id, corpid) {
        suite_id -> Text,
        corpid -> Text,
        step -> Text,
        cursor -> Text,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    registrations (event_id) {
        event_id -> BigInt,
        provider_corpid -> Text,
        kind -> Text,
        corpid -> Text,
        register_code -> Text,
        template_id -> Text,
        state -> Text,
        userid -> Text,
        contact_sync_token -> Nullable<Text>,
        contact_sync_expires_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    console_sessions (id_hash) {
        id_hash -> Text,
        actor -> Text,
        csrf_token -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}
