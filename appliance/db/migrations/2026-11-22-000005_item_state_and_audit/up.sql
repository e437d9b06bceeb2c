-- Pin and archive are stored in clear: they only order and hide rows, and are needed
-- while the vault is locked to count what a person keeps. Everything a person wrote
-- (text, tag names, task status, priority and due date) stays in the encrypted
-- item_versions.content.
ALTER TABLE items
    ADD COLUMN pinned boolean NOT NULL DEFAULT false,
    ADD COLUMN archived boolean NOT NULL DEFAULT false;

-- What happened to an account, shown to its owner: logins, failed logins, unlocks,
-- exports, imports, API token creation, use and revocation. `detail` holds only
-- non-secret context (a token's name, a count); never vault content.
CREATE TABLE audit_events (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL CHECK (event ~ '^[a-z_]{1,40}$'),
    detail text NOT NULL DEFAULT '' CHECK (length(detail) <= 200),
    -- The client's address, when the event came from a request.
    client text CHECK (length(client) <= 64)
);

CREATE INDEX audit_events_user_at ON audit_events (user_id, at DESC);
