-- What a person did with suggestions (a tag added or dismissed, a task accepted or
-- dismissed), read back to weigh the next tag suggestions and to hide dismissed tasks.
-- Tag names and suggested titles are as private as the notes, so the record is stored
-- only encrypted: AES-256-GCM under the person's vault key, bound to (owner, id) with a
-- label of its own (cv_crypto::vault::UnlockedVault::encrypt_feedback). Only the time
-- is clear. The vault service keeps at most a fixed number of rows per person
-- (cv_db::feedback::MAX_PER_USER), dropping the oldest.
CREATE TABLE suggestion_feedback (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    ciphertext bytea NOT NULL
);

CREATE INDEX suggestion_feedback_user ON suggestion_feedback (user_id, created_at);
