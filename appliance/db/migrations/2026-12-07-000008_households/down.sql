DROP TABLE invitations;
ALTER TABLE users DROP COLUMN renew_required;
