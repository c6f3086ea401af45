//! The fleet server's device API, spoken over HTTP on the devices' behalf: each call carries
//! the device's own credential, so the server authorises every device as if it came directly.

use anyhow::{Context as _, anyhow, bail};
use std::time::Duration;

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| path.display().to_string())
}

/// What the server said, reduced to what the gateway acts on.
#[derive(Debug)]
pub(crate) enum Answer {
    /// 2xx, with the body.
    Ok(Vec<u8>),
    /// 401: the server does not know the credential.
    Unauthorized,
    /// 403: known device, but not allowed this (release not assigned, device id mismatch).
    Forbidden,
    /// Another 4xx: the server refused the request itself; sending it again will not help.
    Refused(u16),
    /// No answer, a timeout or a 5xx: the same request may succeed later.
    Unavailable(String),
}

#[derive(Debug)]
pub(crate) struct Upstream {
    client: reqwest::Client,
    base: String,
    /// For device requests: shorter than a device's own 10 s timeout, so that an answer the
    /// gateway relays is one the device still waits for.
    timeout: Duration,
    /// For whole-release downloads, which may be large.
    artifact_timeout: Duration,
}

impl Upstream {
    pub(crate) fn new(config: &crate::Config) -> anyhow::Result<Upstream> {
        let mut client = reqwest::Client::builder()
            // The server's address is given explicitly: an HTTP_PROXY of the environment must
            // not reroute device traffic.
            .no_proxy()
            .connect_timeout(Duration::from_secs(2));
        if let Some(ca) = &config.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
                .map_err(|e| anyhow!("{}: {e}", ca.display()))?;
            if certs.is_empty() {
                bail!("{}: no PEM certificate in it", ca.display());
            }
            // A private CA is trusted alone: no public CA can then stand in for the server.
            client = client.tls_built_in_root_certs(false);
            for c in certs {
                client = client.add_root_certificate(c);
            }
        }
        if let Some((cert, key)) = &config.client_cert {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                anyhow!(
                    "client certificate {} with key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
            client = client.identity(identity);
        }
        Ok(Upstream {
            client: client.build()?,
            base: config.server.trim_end_matches('/').to_owned(),
            timeout: config.request_timeout,
            artifact_timeout: Duration::from_secs(120),
        })
    }

    /// POSTs one device message (`checkin`, `chunk` or `reports`).
    pub(crate) async fn post(&self, endpoint: &str, credential: &str, body: Vec<u8>) -> Answer {
        let request = self
            .client
            .post(format!("{}/api/device/{endpoint}", self.base))
            .bearer_auth(credential)
            .header("content-type", "application/cbor")
            .timeout(self.timeout)
            .body(body);
        Self::send(request).await
    }

    /// POSTs a long-poll check-in, which the server may hold up to `wait`.
    pub(crate) async fn check_in_waiting(
        &self,
        credential: &str,
        body: Vec<u8>,
        wait: Duration,
    ) -> Answer {
        let request = self
            .client
            .post(format!("{}/api/device/checkin", self.base))
            .bearer_auth(credential)
            .header("content-type", "application/cbor")
            .timeout(wait + self.timeout)
            .body(body);
        Self::send(request).await
    }

    /// GETs the whole payload of `release`, or of its stream `stream`.
    pub(crate) async fn artifact(
        &self,
        release: u64,
        stream: Option<u64>,
        credential: &str,
    ) -> Answer {
        let url = match stream {
            None => format!("{}/api/device/artifacts/{release}", self.base),
            Some(s) => format!("{}/api/device/artifacts/{release}/streams/{s}", self.base),
        };
        let request = self
            .client
            .get(url)
            .bearer_auth(credential)
            .timeout(self.artifact_timeout);
        Self::send(request).await
    }

    async fn send(request: reqwest::RequestBuilder) -> Answer {
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Answer::Unavailable(e.to_string()),
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => match response.bytes().await {
                Ok(body) => Answer::Ok(body.to_vec()),
                // Cut off mid-body: as if it never came.
                Err(e) => Answer::Unavailable(e.to_string()),
            },
            401 => Answer::Unauthorized,
            403 => Answer::Forbidden,
            400..=499 => Answer::Refused(status),
            _ => Answer::Unavailable(format!("HTTP {status}")),
        }
    }
}
