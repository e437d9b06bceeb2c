DROP TABLE setup_code;
DROP TABLE sessions;
DROP TABLE users;
