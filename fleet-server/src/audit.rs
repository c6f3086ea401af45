//! The audit log: every operator action, who did it, on what, when; and every failed sign-in
//! or operator token, from which address.

use crate::auth::Principal;
use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::schema::audit_log;
use crate::store::now_ms;
use diesel::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = audit_log)]
pub struct Entry {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

pub fn record(
    conn: &mut AnyConnection,
    who: &Principal,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), ApiError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at_ms.eq(now_ms()),
            audit_log::actor.eq(&who.name),
            audit_log::role.eq(who.role.as_str()),
            audit_log::action.eq(action),
            audit_log::target.eq(target),
            audit_log::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// A failed sign-in or operator token (`action` says which) from `address`. The throttle
/// bounds how many a window can write.
pub fn record_failure(
    conn: &mut AnyConnection,
    action: &str,
    address: &str,
    detail: &str,
) -> Result<(), ApiError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at_ms.eq(now_ms()),
            audit_log::actor.eq("(unauthenticated)"),
            audit_log::role.eq("none"),
            audit_log::action.eq(action),
            audit_log::target.eq(address),
            audit_log::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// The newest `limit` entries, newest first.
pub fn recent(conn: &mut AnyConnection, limit: i64) -> Result<Vec<Entry>, ApiError> {
    Ok(audit_log::table
        .order(audit_log::id.desc())
        .limit(limit)
        .select(Entry::as_select())
        .load(conn)?)
}
