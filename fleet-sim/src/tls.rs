//! Which servers the simulator's HTTP clients (devices and operator) trust: a private CA's
//! certificates from a PEM file, and then only those, or the public roots.

use anyhow::{Context, anyhow, bail};
use std::path::Path;

/// `builder` trusting the certificates of `ca` only (a private CA, or a self-signed server
/// certificate), or the public roots when `ca` is `None`.
pub fn trust(
    builder: reqwest::blocking::ClientBuilder,
    ca: Option<&Path>,
) -> anyhow::Result<reqwest::blocking::ClientBuilder> {
    let Some(path) = ca else {
        return Ok(builder);
    };
    let pem = std::fs::read(path).with_context(|| path.display().to_string())?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(certs
        .into_iter()
        .fold(builder.tls_built_in_root_certs(false), |b, c| {
            b.add_root_certificate(c)
        }))
}
