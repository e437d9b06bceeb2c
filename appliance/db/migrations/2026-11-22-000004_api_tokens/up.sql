-- Bearer tokens for scripts and phone shortcuts. Only the SHA-256 of a token is stored:
-- the token itself is shown once when it is made.
CREATE TABLE api_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- What the person called it ("iPhone shortcut").
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    -- capture: may only add to the vault, also while it is locked; read: may read;
    -- full: both.
    scope text NOT NULL CHECK (scope IN ('capture', 'read', 'full')),
    token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX api_tokens_user ON api_tokens (user_id);
