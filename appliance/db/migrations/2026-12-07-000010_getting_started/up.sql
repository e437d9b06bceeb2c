-- The steps of the home page's getting-started list that a person ticked off: the ones
-- the appliance cannot see done by itself ("I trust the certificate": only the phone
-- knows) and `dismissed` for the whole list. The step names are the appliance's own, not
-- vault content, so they are stored clear.
CREATE TABLE getting_started (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    step text NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, step)
);
