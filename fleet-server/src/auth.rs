//! Operator tokens with roles (viewer < operator < admin), stored as SHA-256 hashes.

use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::schema::operator_tokens;
use crate::store::{now_ms, sha256_hex};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

/// What a token may do: viewers read, operators act on devices, artifacts and rollouts,
/// admins also manage tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// A fresh random token (48 hex digits).
pub fn new_token() -> Result<String, ApiError> {
    let mut raw = [0u8; 24];
    getrandom::getrandom(&mut raw).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(hex::encode(raw))
}

/// Stores `token` for `name` with `role`; storing the same token again is a no-op (the
/// bootstrap admin token is installed at every start).
pub fn install(
    conn: &mut AnyConnection,
    name: &str,
    role: Role,
    token: &str,
) -> Result<(), ApiError> {
    let hash = sha256_hex(token.as_bytes());
    let exists = operator_tokens::table
        .find(&hash)
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if !exists {
        diesel::insert_into(operator_tokens::table)
            .values((
                operator_tokens::token_sha256.eq(hash),
                operator_tokens::name.eq(name),
                operator_tokens::role.eq(role.as_str()),
                operator_tokens::created_ms.eq(now_ms()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Creates a token; returns it (shown once).
pub fn create(conn: &mut AnyConnection, name: &str, role: Role) -> Result<String, ApiError> {
    let token = new_token()?;
    install(conn, name, role, &token)?;
    Ok(token)
}

/// The principal a token belongs to; an unknown token is 401.
pub fn lookup(conn: &mut AnyConnection, token: &str) -> Result<Principal, ApiError> {
    let (name, role): (String, String) = operator_tokens::table
        .find(sha256_hex(token.as_bytes()))
        .select((operator_tokens::name, operator_tokens::role))
        .first(conn)
        .optional()?
        .ok_or(ApiError::Unauthorized)?;
    let role = Role::parse(&role).ok_or(ApiError::Unauthorized)?;
    Ok(Principal { name, role })
}

/// How long a dashboard session lasts.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;

/// Starts a dashboard session for `who`; returns the cookie's session id and the CSRF token.
pub fn open_session(
    conn: &mut AnyConnection,
    who: &Principal,
) -> Result<(String, String), ApiError> {
    use crate::schema::sessions;
    let (id, csrf) = (new_token()?, new_token()?);
    let now = now_ms();
    diesel::delete(sessions::table.filter(sessions::expires_ms.lt(now))).execute(conn)?;
    diesel::insert_into(sessions::table)
        .values((
            sessions::id_sha256.eq(sha256_hex(id.as_bytes())),
            sessions::name.eq(&who.name),
            sessions::role.eq(who.role.as_str()),
            sessions::csrf.eq(&csrf),
            sessions::expires_ms.eq(now + SESSION_MS),
        ))
        .execute(conn)?;
    Ok((id, csrf))
}

/// The principal and CSRF token of a live session; an unknown or expired one is 401.
pub fn session(conn: &mut AnyConnection, id: &str) -> Result<(Principal, String), ApiError> {
    use crate::schema::sessions;
    let (name, role, csrf): (String, String, String) = sessions::table
        .find(sha256_hex(id.as_bytes()))
        .filter(sessions::expires_ms.ge(now_ms()))
        .select((sessions::name, sessions::role, sessions::csrf))
        .first(conn)
        .optional()?
        .ok_or(ApiError::Unauthorized)?;
    let role = Role::parse(&role).ok_or(ApiError::Unauthorized)?;
    Ok((Principal { name, role }, csrf))
}

pub fn close_session(conn: &mut AnyConnection, id: &str) -> Result<(), ApiError> {
    use crate::schema::sessions;
    diesel::delete(sessions::table.find(sha256_hex(id.as_bytes()))).execute(conn)?;
    Ok(())
}
