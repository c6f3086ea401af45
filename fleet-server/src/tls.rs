//! TLS on the server's listener (rustls, ring): the server's certificate chain and key from PEM
//! files, client certificates verified against a private CA when presented (gateways; operators
//! and direct devices present none), the handshake before actix-http with every refusal logged,
//! and the gateway a verified client certificate names.

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The one crypto provider: ring (never aws-lc-rs, never OpenSSL).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (a chain, or a CA bundle); none is an error.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow!(
            "{}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ),
        e => anyhow!("{}: {e}", path.display()),
    })
}

/// The TLS configuration of `--tls-cert`, `--tls-key` and, when given, `--tls-client-ca`:
/// client certificates are then optional, and one that is presented must chain to that CA
/// (else the handshake fails).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>> {
    let chain = certificates(cert)?;
    let secret = private_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots
                    .add(c)
                    .map_err(|e| anyhow!("{}: not a CA certificate: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            // Operators, browsers and devices without a gateway have no certificate.
            .allow_unauthenticated()
            .build()
            .map_err(|e| anyhow!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, secret)
        .map_err(|e| anyhow!("{} with {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names of a connection's verified client certificate (its DNS subject alternative
/// names): the gateway it speaks as. Stored in the connection's extensions at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGateway(pub Vec<String>);

impl PeerGateway {
    fn of(conn: &rustls::ServerConnection) -> Option<PeerGateway> {
        // rustls has verified the chain (the handshake refuses anything else), so the leaf's
        // names are the CA's word.
        let leaf = conn.peer_certificates()?.first()?;
        let names = match webpki::EndEntityCert::try_from(leaf) {
            Ok(cert) => cert.valid_dns_names().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        Some(PeerGateway(names))
    }

    /// Whether the certificate names gateway `name`.
    pub fn names(&self, name: &str) -> bool {
        self.0.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

type TlsStream = tokio_rustls::server::TlsStream<actix_web::rt::net::TcpStream>;

/// Adds a TLS listener serving `state`'s routes to `builder`: the handshake (within
/// `read_timeout`) is done here, so a refused one is logged with its peer and reason, and
/// nothing else is read from that connection.
pub fn listen(
    builder: actix_server::ServerBuilder,
    lst: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: crate::api::AppState,
    read_timeout: Duration,
) -> std::io::Result<actix_server::ServerBuilder> {
    use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _, fn_service, map_config};
    let addr = lst.local_addr()?;
    builder.listen("fleet-server-tls", lst, move || {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
        let handshake = fn_service(move |tcp: actix_web::rt::net::TcpStream| {
            let acceptor = acceptor.clone();
            async move {
                let peer = tcp.peer_addr().ok();
                let refused = |reason: String| {
                    crate::log::warn(
                        "tls_handshake_refused",
                        &[
                            ("peer", peer.map(|p| p.to_string()).unwrap_or_default()),
                            ("reason", reason),
                        ],
                    );
                };
                match actix_web::rt::time::timeout(read_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => Ok((stream, actix_http::Protocol::Http1, peer)),
                    Ok(Err(e)) => {
                        refused(e.to_string());
                        Err(())
                    }
                    Err(_) => {
                        refused(format!("no handshake within {} s", read_timeout.as_secs()));
                        Err(())
                    }
                }
            }
        });
        let app = crate::server::app(state.clone())
            .into_factory()
            .map_err(|e: actix_web::Error| e.error_response());
        let http = actix_http::HttpService::build()
            .client_request_timeout(read_timeout)
            .client_disconnect_timeout(Duration::from_secs(1))
            // As on plain HTTP: a hang-up ends a waiting long-poll check-in.
            .h1_allow_half_closed(false)
            .local_addr(addr)
            .on_connect_ext(|io: &TlsStream, ext: &mut actix_http::Extensions| {
                if let Some(gateway) = PeerGateway::of(io.get_ref().1) {
                    ext.insert(gateway);
                }
            })
            .finish(map_config(app, |_| actix_web::dev::AppConfig::default()));
        handshake.and_then(http.map_err(|_| ()))
    })
}
