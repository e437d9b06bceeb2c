-- Items in a person's vault. Everything a person wrote is in `item_versions.content`,
-- encrypted; what stays in clear is only what the appliance needs to store and order
-- rows: ids, owner, version numbers, timestamps.

CREATE TABLE items (
    -- Chosen by the application before encrypting: the ciphertext is bound to it.
    id uuid PRIMARY KEY,
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The item's own data key (cv_crypto::vault): wrapped by the owner's vault key, or,
    -- when captured while the vault was locked, sealed to the owner's capture public
    -- key until the next unlock re-wraps it. Deleting this row destroys the key.
    data_key bytea NOT NULL,
    data_key_sealed boolean NOT NULL,
    -- The current version (every version is kept in item_versions).
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX items_owner_created ON items (owner_id, created_at DESC);
CREATE INDEX items_owner_sealed ON items (owner_id) WHERE data_key_sealed;

CREATE TABLE item_versions (
    item_id uuid NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    version integer NOT NULL CHECK (version >= 1),
    -- AES-256-GCM under the item's data key, bound to (item, version, owner).
    content bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, version)
);
