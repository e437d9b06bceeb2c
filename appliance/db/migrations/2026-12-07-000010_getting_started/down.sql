DROP TABLE getting_started;
