-- Accounts, server-side sessions and the one-time setup code.

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Validated by the application too (cv_db::UserName); the CHECK keeps a bad row out
    -- whatever writes it.
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,31}$'),
    -- An Argon2id PHC string; the parameters travel with the hash.
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A household has exactly one owner: the account created at setup.
CREATE UNIQUE INDEX users_one_owner ON users (role) WHERE role = 'owner';

CREATE TABLE sessions (
    -- SHA-256 of the cookie's secret: a database dump holds no usable session.
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The synchronizer token every form of this session must echo.
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    -- Sliding idle expiry, never past created_at + the absolute timeout.
    expires_at timestamptz NOT NULL
);

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE setup_code (
    -- At most one row: the code printed at the latest start while no owner exists.
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    code_hash bytea NOT NULL CHECK (octet_length(code_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
