//! Device credentials: SHA-256 of each credential to its device id, looked up in the database
//! once and then kept (a credential never changes its device; enrolment only adds), with the
//! gateway the device is bound to.

use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::store;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct Credentials {
    known: RwLock<HashMap<String, Known>>,
}

/// A credential's device, and the gateway it is bound to (its tag `gateway:NAME`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub device: String,
    pub gateway: Option<String>,
}

/// The gateway a device's tags bind it to: `gateway:NAME` (tags are set at enrolment only).
pub fn bound_gateway(tags: &str) -> Option<String> {
    tags.split(',')
        .find_map(|t| t.strip_prefix(GATEWAY_TAG))
        .map(str::to_owned)
}

/// The tag prefix that binds a device to a gateway.
pub const GATEWAY_TAG: &str = "gateway:";

impl Credentials {
    /// The device a credential belongs to; an unknown one is 401.
    pub fn device(&self, conn: &mut AnyConnection, credential: &str) -> Result<Known, ApiError> {
        let hash = store::sha256_hex(credential.as_bytes());
        if let Some(known) = self.known.read().ok().and_then(|k| k.get(&hash).cloned()) {
            return Ok(known);
        }
        let device = store::device_by_hash(conn, &hash)?.ok_or(ApiError::Unauthorized)?;
        let known = Known {
            gateway: bound_gateway(&device.tags),
            device: device.id,
        };
        if let Ok(mut k) = self.known.write() {
            k.insert(hash, known.clone());
        }
        Ok(known)
    }
}
