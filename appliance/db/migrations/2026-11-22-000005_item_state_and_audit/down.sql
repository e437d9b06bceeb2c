DROP TABLE audit_events;
ALTER TABLE items DROP COLUMN archived, DROP COLUMN pinned;
