//! The getting-started steps a person ticked off themselves (see the migration
//! `getting_started`). Steps the appliance can see done (a token exists, a VPN device
//! exists, a second account exists) are never stored: they are derived each time.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;
use crate::models::UserId;
use crate::schema::getting_started;

/// The steps `user` ticked off.
pub async fn done(conn: &mut AsyncPgConnection, user: UserId) -> Result<Vec<String>, DbError> {
    getting_started::table
        .filter(getting_started::user_id.eq(user.0))
        .select(getting_started::step)
        .load(conn)
        .await
        .map_err(DbError::query("listing getting-started steps"))
}

/// Records `step` as done for `user` (again is fine: the first time is kept).
pub async fn mark_done(
    conn: &mut AsyncPgConnection,
    user: UserId,
    step: &str,
) -> Result<(), DbError> {
    diesel::insert_into(getting_started::table)
        .values((
            getting_started::user_id.eq(user.0),
            getting_started::step.eq(step),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map_err(DbError::query("ticking off a getting-started step"))?;
    Ok(())
}
