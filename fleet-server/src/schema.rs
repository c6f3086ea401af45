//! Diesel table definitions, one for both backends (migrations/sqlite and migrations/postgres).

diesel::table! {
    devices (id) {
        id -> Text,
        board -> Text,
        tags -> Text,
        credential_sha256 -> Text,
        firmware_version -> Nullable<Text>,
        model_version -> Nullable<Text>,
        model_slot -> Nullable<Integer>,
        last_seen_ms -> Nullable<BigInt>,
        last_accuracy_bp -> Nullable<Integer>,
        last_p99_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    artifacts (id) {
        id -> BigInt,
        kind -> Text,
        name -> Text,
        version -> Text,
        security_counter -> BigInt,
        boards -> Text,
        envelope -> Binary,
        payload_sha256 -> Text,
        payload_len -> BigInt,
        created_ms -> BigInt,
    }
}

diesel::table! {
    assignments (device_id) {
        device_id -> Text,
        artifact_id -> BigInt,
    }
}

diesel::table! {
    reports (device_id, seq) {
        device_id -> Text,
        seq -> BigInt,
        release_id -> BigInt,
        component -> Text,
        version -> Text,
        step -> Text,
        detail -> Text,
        received_ms -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(devices, artifacts, assignments, reports);
