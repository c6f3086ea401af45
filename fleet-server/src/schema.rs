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
        runtime_abi -> Nullable<Integer>,
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
        bad_reason -> Nullable<Text>,
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

diesel::table! {
    rollouts (id) {
        id -> BigInt,
        artifact_id -> BigInt,
        selector -> Text,
        spec -> Text,
        state -> Text,
        stage -> Integer,
        stage_started_ms -> BigInt,
        halted_gate -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_until_ms -> BigInt,
        created_by -> Text,
        created_ms -> BigInt,
        updated_ms -> BigInt,
    }
}

diesel::table! {
    rollout_devices (rollout_id, device_id) {
        rollout_id -> BigInt,
        device_id -> Text,
        stage -> Integer,
        state -> Text,
        previous_version -> Nullable<Text>,
        previous_accuracy_bp -> Nullable<Integer>,
        accuracy_bp -> Nullable<Integer>,
        p99_us -> Nullable<BigInt>,
        finished_ms -> Nullable<BigInt>,
        bytes_sent -> BigInt,
    }
}

diesel::table! {
    streams (id) {
        id -> BigInt,
        artifact_id -> BigInt,
        base_artifact_id -> Nullable<BigInt>,
        base_sha256 -> Nullable<Text>,
        len -> BigInt,
        sha256 -> Text,
    }
}

diesel::table! {
    rollout_events (id) {
        id -> BigInt,
        rollout_id -> BigInt,
        at_ms -> BigInt,
        stage -> Integer,
        kind -> Text,
        detail -> Text,
    }
}

diesel::table! {
    operator_tokens (token_sha256) {
        token_sha256 -> Text,
        name -> Text,
        role -> Text,
        created_ms -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at_ms -> BigInt,
        actor -> Text,
        role -> Text,
        action -> Text,
        target -> Text,
        detail -> Text,
    }
}

diesel::table! {
    sessions (id_sha256) {
        id_sha256 -> Text,
        name -> Text,
        role -> Text,
        csrf -> Text,
        expires_ms -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    sessions,
    devices,
    artifacts,
    assignments,
    reports,
    rollouts,
    rollout_devices,
    rollout_events,
    streams,
    operator_tokens,
    audit_log,
);
