DROP TABLE suggestion_feedback;
