//! The appliance's own settings, chosen by its owner (see the migration `settings`):
//! for now the time zone that pages show times in. Values are checked by the vault
//! service before they are stored; this module only keeps them.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;
use crate::schema::settings;

/// The time zone name the owner chose, `None` while none was chosen.
pub async fn time_zone(conn: &mut AsyncPgConnection) -> Result<Option<String>, DbError> {
    settings::table
        .select(settings::time_zone)
        .first::<String>(conn)
        .await
        .optional()
        .map_err(DbError::query("reading the appliance's time zone"))
}

/// Stores the time zone name (replacing any earlier one).
pub async fn set_time_zone(conn: &mut AsyncPgConnection, name: &str) -> Result<(), DbError> {
    diesel::insert_into(settings::table)
        .values((settings::singleton.eq(true), settings::time_zone.eq(name)))
        .on_conflict(settings::singleton)
        .do_update()
        .set((
            settings::time_zone.eq(name),
            settings::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(DbError::query("storing the appliance's time zone"))
}
