-- Each account's vault keys, wrapped: cv_crypto::vault::KeyBundle (the vault key under
-- the passphrase and under the recovery key, the KDF salt and parameters, the capture
-- key pair with its secret half wrapped by the vault key). Nothing here opens without
-- the person's passphrase or recovery key.
CREATE TABLE vault_keys (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    bundle bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
