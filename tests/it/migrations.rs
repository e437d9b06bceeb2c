//! Migrations go up, down and up again, and `schema.rs` matches what they create.

use cv_testkit::TestCluster;
use diesel::QueryableByName;
use diesel::sql_types::{Integer, Text};
use diesel_async::RunQueryDsl;

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    udt_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
    #[diesel(sql_type = Integer)]
    ordinal_position: i32,
}

async fn columns(url: &str) -> Vec<Column> {
    let mut conn = cv_db::connect_once(url).await.unwrap();
    diesel::sql_query(
        "SELECT table_name::text, column_name::text, udt_name::text, is_nullable::text, \
         ordinal_position::int FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' \
         ORDER BY table_name, ordinal_position",
    )
    .load(&mut conn)
    .await
    .unwrap()
}

/// Renders the live schema the way `diesel print-schema` writes `table!` blocks (the
/// parts that matter: tables, columns, types, nullability).
fn render(columns: &[Column]) -> String {
    let mut out = String::new();
    let mut current = "";
    for c in columns {
        if c.table_name != current {
            current = &c.table_name;
            out.push_str(&format!("table {current}\n"));
        }
        let ty = match c.udt_name.as_str() {
            "uuid" => "Uuid",
            "text" => "Text",
            "bytea" => "Bytea",
            "timestamptz" => "Timestamptz",
            "bool" => "Bool",
            "int4" => "Int4",
            "int8" => "Int8",
            other => panic!("schema check does not know type {other}"),
        };
        let ty = if c.is_nullable == "YES" {
            format!("Nullable<{ty}>")
        } else {
            ty.to_owned()
        };
        let _ = c.ordinal_position;
        out.push_str(&format!("  {} -> {ty},\n", c.column_name));
    }
    out
}

/// The same rendering of `appliance/db/src/schema.rs`.
fn render_schema_rs() -> String {
    let text = include_str!("../../appliance/db/src/schema.rs");
    let table = regex::Regex::new(r"^\s*(\w+) \(").unwrap();
    let column = regex::Regex::new(r"^\s*(\w+) -> ([\w<>]+),").unwrap();
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(c) = table.captures(line) {
            tables.push((c[1].to_owned(), Vec::new()));
        } else if let Some(c) = column.captures(line) {
            tables
                .last_mut()
                .unwrap()
                .1
                .push(format!("  {} -> {},\n", &c[1], &c[2]));
        }
    }
    tables.sort();
    tables
        .into_iter()
        .map(|(name, cols)| format!("table {name}\n{}", cols.concat()))
        .collect()
}

#[tokio::test]
async fn migrations_go_up_down_and_up_and_match_schema_rs() {
    let cluster = TestCluster::start().await;
    let url = cluster.fresh_database().await;

    let applied = cv_db::run_migrations(&url).await.unwrap();
    assert!(!applied.is_empty());
    let first = render(&columns(&url).await);
    assert_eq!(
        first,
        render_schema_rs(),
        "schema.rs does not match the migrations"
    );

    let reverted = cv_db::revert_all_migrations(&url).await.unwrap();
    assert_eq!(reverted.len(), applied.len());
    assert!(
        columns(&url).await.is_empty(),
        "down migrations leave tables behind"
    );

    let again = cv_db::run_migrations(&url).await.unwrap();
    assert_eq!(again, applied);
    assert_eq!(render(&columns(&url).await), first);
    assert!(
        cv_db::run_migrations(&url).await.unwrap().is_empty(),
        "a second run applies nothing"
    );
}

/// A newer version's migrations only add; after a rollback the older version runs on
/// the database they left: its migration run finds nothing to do (it does not know the
/// newer migration and leaves it be), and its queries work around the new column and
/// table.
#[tokio::test]
async fn an_older_version_runs_on_a_database_a_newer_one_migrated() {
    let cluster = TestCluster::start().await;
    let url = cluster.fresh_database().await;
    cv_db::run_migrations(&url).await.unwrap();

    let mut conn = cv_db::connect_once(&url).await.unwrap();
    for sql in [
        "CREATE TABLE later_things (id uuid PRIMARY KEY, note text)",
        "ALTER TABLE items ADD COLUMN later_note text",
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('20991231000099')",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    drop(conn);

    assert!(
        cv_db::run_migrations(&url).await.unwrap().is_empty(),
        "the older version applies nothing and does not fail on the newer migration"
    );
    let mut conn = cv_db::connect_once(&url).await.unwrap();
    assert!(!cv_db::models::owner_exists(&mut conn).await.unwrap());
    let nobody = cv_db::UserId(uuid::Uuid::new_v4());
    assert_eq!(cv_db::items::count(&mut conn, nobody).await.unwrap(), 0);
    assert!(
        cv_db::audit::newest(&mut conn, nobody, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
