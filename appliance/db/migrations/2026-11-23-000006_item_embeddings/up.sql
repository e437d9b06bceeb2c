-- The embeddings of an item's chunks (semantic search), one row per item for the version
-- they were computed from. Vectors can be inverted back to text, so they are stored only
-- encrypted: AES-256-GCM under the item's own data key, bound to (item id, version,
-- owner, model) with a label distinct from the content's (cv_crypto::vault). Deleting
-- the item deletes the row, and destroying its data key shreds it anyway.
CREATE TABLE item_embeddings (
    item_id uuid PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    -- The item version the chunks were cut from; an older one is stale and recomputed.
    version integer NOT NULL CHECK (version >= 1),
    -- The embedding model's name: vectors of another model are not comparable.
    model text NOT NULL,
    ciphertext bytea NOT NULL
);
