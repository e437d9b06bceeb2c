// The diesel schema, kept identical to what `diesel print-schema` prints for the
// migrations; `tests/it/migrations.rs` compares it with the live database's columns.

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        scope -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        user_id -> Uuid,
        at -> Timestamptz,
        event -> Text,
        detail -> Text,
        client -> Nullable<Text>,
    }
}

diesel::table! {
    getting_started (user_id, step) {
        user_id -> Uuid,
        step -> Text,
        done_at -> Timestamptz,
    }
}

diesel::table! {
    invitations (id) {
        id -> Uuid,
        token_hash -> Bytea,
        name -> Text,
        role -> Text,
        invited_by -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    item_embeddings (item_id) {
        item_id -> Uuid,
        version -> Int4,
        model -> Text,
        ciphertext -> Bytea,
    }
}

diesel::table! {
    item_versions (item_id, version) {
        item_id -> Uuid,
        version -> Int4,
        content -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    items (id) {
        id -> Uuid,
        owner_id -> Uuid,
        data_key -> Bytea,
        data_key_sealed -> Bool,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        pinned -> Bool,
        archived -> Bool,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        csrf_token -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    settings (singleton) {
        singleton -> Bool,
        time_zone -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    setup_code (singleton) {
        singleton -> Bool,
        code_hash -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    suggestion_feedback (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        ciphertext -> Bytea,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        name -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamptz,
        renew_required -> Bool,
    }
}

diesel::table! {
    vault_keys (user_id) {
        user_id -> Uuid,
        bundle -> Bytea,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(audit_events -> users (user_id));
diesel::joinable!(getting_started -> users (user_id));
diesel::joinable!(invitations -> users (invited_by));
diesel::joinable!(item_embeddings -> items (item_id));
diesel::joinable!(item_versions -> items (item_id));
diesel::joinable!(items -> users (owner_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(suggestion_feedback -> users (user_id));
diesel::joinable!(vault_keys -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    audit_events,
    getting_started,
    invitations,
    item_embeddings,
    item_versions,
    items,
    sessions,
    settings,
    setup_code,
    suggestion_feedback,
    users,
    vault_keys,
);
