DROP TABLE item_embeddings;
