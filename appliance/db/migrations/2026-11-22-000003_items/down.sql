DROP TABLE item_versions;
DROP TABLE items;
