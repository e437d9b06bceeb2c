-- Settings of the whole appliance, chosen by its owner: at most one row (like
-- setup_code). No row means "never chosen": the vault service then uses the box's own
-- time zone (/etc/timezone) or UTC.
CREATE TABLE settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- An IANA time zone name ("Europe/Berlin"), checked by the vault service against
    -- its bundled copy of the tz database before it is stored. Times are stored in UTC
    -- everywhere; this only says how pages show them to people.
    time_zone text NOT NULL CHECK (time_zone <> ''),
    updated_at timestamptz NOT NULL DEFAULT now()
);
