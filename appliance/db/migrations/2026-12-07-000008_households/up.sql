-- Households that keep each other's secrets.
--
-- `renew_required`: the account's passphrase (and so its recovery key) was chosen by
-- someone else (`contextvault admin create-user` for a member, or the add-member form of
-- earlier versions, where the owner typed the member's first passphrase and saw the
-- recovery key). Such an account cannot log in until its holder sets a passphrase of
-- their own, which also gives the vault a new key and a new recovery key.
ALTER TABLE users ADD COLUMN renew_required boolean NOT NULL DEFAULT false;

-- Every member and admin so far was created by someone else: the one who did still
-- holds a passphrase and a recovery key that open the vault. Their sessions end now, so
-- the next login renews.
UPDATE users SET renew_required = true WHERE role <> 'owner';
DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE renew_required);

-- One-time invitations to join the household: the invited person opens the link on their
-- own device and chooses their own passphrase, so the inviter never learns it or the
-- recovery key. Only the SHA-256 of the link's secret is stored. An accepted invitation is
-- deleted in the transaction that creates the account (the inviter's audit log keeps the
-- record); an expired or revoked one is kept until the inviter clears it, so the household
-- page can say what happened to it.
CREATE TABLE invitations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    -- The account name the invitation creates (the same rule as users.name).
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,31}$'),
    role text NOT NULL CHECK (role IN ('admin', 'member')),
    -- Removing the inviter withdraws what they sent.
    invited_by uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- At most one open invitation per name.
CREATE UNIQUE INDEX invitations_open_name ON invitations (name) WHERE revoked_at IS NULL;
CREATE INDEX invitations_invited_by ON invitations (invited_by);
