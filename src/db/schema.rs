// @generated automatically by Diesel CLI.

diesel::table! {
    alert_channels (id) {
        id -> Text,
        kind -> Text,
        name -> Text,
        config -> Jsonb,
        kinds -> Nullable<Array<Nullable<Text>>>,
        enabled -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    alert_deliveries (id) {
        id -> Int8,
        alert_id -> Text,
        channel_id -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        leased_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    alerts (id) {
        id -> Text,
        kind -> Text,
        subject -> Text,
        title -> Text,
        body -> Text,
        details -> Jsonb,
        created_at -> Timestamptz,
        digest_id -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        operator -> Text,
        action -> Text,
        target_type -> Text,
        target_id -> Text,
        note -> Nullable<Text>,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    checkouts (id) {
        id -> Text,
        merchant_id -> Text,
        merchant_order_id -> Text,
        request_fingerprint -> Bytea,
        protocol -> Text,
        amount -> Numeric,
        subject -> Nullable<Text>,
        notify_url -> Nullable<Text>,
        return_url -> Nullable<Text>,
        compat -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        order_id -> Nullable<Text>,
    }
}

diesel::table! {
    console_sessions (token_hash) {
        token_hash -> Bytea,
        operator -> Text,
        csrf_token -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
        operator_token_hash -> Nullable<Bytea>,
    }
}

diesel::table! {
    console_sign_in_failures (id) {
        id -> Int8,
        address -> Text,
        failed_at -> Timestamptz,
    }
}

diesel::table! {
    devices (id) {
        id -> Text,
        name -> Text,
        secret -> Text,
        enabled -> Bool,
        last_seen_at -> Nullable<Timestamptz>,
        last_heartbeat_at -> Nullable<Timestamptz>,
        last_notification_at -> Nullable<Timestamptz>,
        app_version -> Nullable<Text>,
        battery -> Nullable<Int2>,
        created_at -> Timestamptz,
        allowed_packages -> Nullable<Array<Nullable<Text>>>,
        trust_unlabelled -> Bool,
        notification_access -> Nullable<Bool>,
        queue_depth -> Nullable<Int4>,
        oldest_unsent_secs -> Nullable<Int4>,
        os_version -> Nullable<Text>,
        offline_alerted_at -> Nullable<Timestamptz>,
        silence_alerted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        #[sql_name = "type"]
        type_ -> Text,
        order_id -> Text,
        merchant_id -> Text,
        data -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    forwarder_signatures (device_id, timestamp_ms, sign) {
        device_id -> Text,
        timestamp_ms -> Int8,
        sign -> Text,
        body_sha256 -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    merchants (id) {
        id -> Text,
        name -> Text,
        api_key_hash -> Bytea,
        webhook_secret -> Text,
        notify_url -> Nullable<Text>,
        enabled -> Bool,
        created_at -> Timestamptz,
        previous_webhook_secret -> Nullable<Text>,
        previous_webhook_secret_expires_at -> Nullable<Timestamptz>,
        pid -> Int8,
        md5_key -> Text,
        epay_v2_public_key -> Nullable<Text>,
        epusdt_channel -> Nullable<Text>,
    }
}

diesel::table! {
    notifications (id) {
        id -> Int8,
        received_at -> Timestamptz,
        source -> Text,
        device_id -> Nullable<Text>,
        auth_result -> Text,
        auth_headers -> Jsonb,
        body -> Bytea,
        body_length -> Int4,
        body_sha256 -> Bytea,
        remote_addr -> Nullable<Text>,
        payment_id -> Nullable<Text>,
        rejection -> Nullable<Text>,
        reading -> Nullable<Jsonb>,
        same_payment_key -> Nullable<Bytea>,
        compacted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    operator_tokens (name) {
        name -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    orders (id) {
        id -> Text,
        merchant_id -> Text,
        merchant_order_id -> Text,
        request_fingerprint -> Bytea,
        status -> Text,
        channel -> Text,
        amount -> Numeric,
        payable_amount -> Numeric,
        payee_id -> Text,
        qr_code -> Text,
        qr_fixed_amount -> Bool,
        subject -> Nullable<Text>,
        notify_url -> Nullable<Text>,
        return_url -> Nullable<Text>,
        metadata -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        reserved_until -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
        paid_late -> Bool,
        closed_at -> Nullable<Timestamptz>,
        protocol -> Text,
        compat -> Nullable<Jsonb>,
        holds_amount -> Bool,
    }
}

diesel::table! {
    payee_fixed_codes (payee_id, amount) {
        payee_id -> Text,
        amount -> Numeric,
        qr_code -> Text,
    }
}

diesel::table! {
    payees (id) {
        id -> Text,
        channel -> Text,
        name -> Text,
        qr_code -> Text,
        device_id -> Text,
        enabled -> Bool,
        last_used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    payments (id) {
        id -> Text,
        device_id -> Text,
        notification_id -> Text,
        channel -> Nullable<Text>,
        amount -> Nullable<Numeric>,
        package -> Nullable<Text>,
        title -> Nullable<Text>,
        text -> Nullable<Text>,
        reported_at -> Nullable<Timestamptz>,
        payee_id -> Nullable<Text>,
        result -> Text,
        order_id -> Nullable<Text>,
        notification_row -> Int8,
        created_at -> Timestamptz,
        reason -> Nullable<Text>,
        duplicate_of -> Nullable<Text>,
        amounts_read -> Nullable<Array<Nullable<Numeric>>>,
        holds_amount_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    platform_keys (name) {
        name -> Text,
        private_key -> Text,
        public_key -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sql_sources (name) {
        name -> Text,
        revision -> Int4,
        sha256 -> Bytea,
        applied_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Int8,
        delivery_id -> Text,
        attempt -> Int4,
        started_at -> Timestamptz,
        latency_ms -> Int4,
        status_code -> Nullable<Int4>,
        response_excerpt -> Nullable<Text>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        event_id -> Text,
        merchant_id -> Text,
        order_id -> Text,
        url -> Text,
        status -> Text,
        attempts -> Int4,
        retry_step -> Int4,
        next_attempt_at -> Timestamptz,
        leased_until -> Nullable<Timestamptz>,
        last_attempt_at -> Nullable<Timestamptz>,
        last_status_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        kind -> Text,
        destination -> Text,
    }
}

diesel::joinable!(events -> merchants (merchant_id));
diesel::table! {
    sealing_key_check (id) {
        id -> Int4,
        sealed -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(alert_deliveries -> alert_channels (channel_id));
diesel::joinable!(alert_deliveries -> alerts (alert_id));
diesel::joinable!(checkouts -> merchants (merchant_id));
diesel::joinable!(checkouts -> orders (order_id));
diesel::joinable!(events -> orders (order_id));
diesel::joinable!(forwarder_signatures -> devices (device_id));
diesel::joinable!(orders -> merchants (merchant_id));
diesel::joinable!(orders -> payees (payee_id));
diesel::joinable!(payee_fixed_codes -> payees (payee_id));
diesel::joinable!(payees -> devices (device_id));
diesel::joinable!(payments -> devices (device_id));
diesel::joinable!(payments -> notifications (notification_row));
diesel::joinable!(payments -> orders (order_id));
diesel::joinable!(payments -> payees (payee_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(webhook_deliveries -> events (event_id));
diesel::joinable!(webhook_deliveries -> merchants (merchant_id));
diesel::joinable!(webhook_deliveries -> orders (order_id));

diesel::allow_tables_to_appear_in_same_query!(
    alert_channels,
    alert_deliveries,
    alerts,
    audit_log,
    checkouts,
    console_sessions,
    console_sign_in_failures,
    devices,
    events,
    forwarder_signatures,
    merchants,
    notifications,
    operator_tokens,
    orders,
    payee_fixed_codes,
    payees,
    payments,
    platform_keys,
    sealing_key_check,
    sql_sources,
    webhook_attempts,
    webhook_deliveries,
);
