//! Device credentials: SHA-256 of each credential to its device id, looked up in the database
//! once and then kept (a credential never changes its device; enrolment only adds).

use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::store;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct Credentials {
    known: RwLock<HashMap<String, String>>,
}

impl Credentials {
    /// The device a credential belongs to; an unknown one is 401.
    pub fn device(&self, conn: &mut AnyConnection, credential: &str) -> Result<String, ApiError> {
        let hash = store::sha256_hex(credential.as_bytes());
        if let Some(id) = self.known.read().ok().and_then(|k| k.get(&hash).cloned()) {
            return Ok(id);
        }
        let device = store::device_by_hash(conn, &hash)?.ok_or(ApiError::Unauthorized)?;
        if let Ok(mut k) = self.known.write() {
            k.insert(hash, device.id.clone());
        }
        Ok(device.id)
    }
}
