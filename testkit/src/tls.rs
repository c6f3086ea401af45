//! Throw-away certificate authorities for the TLS tests, made at test time (rcgen on ring):
//! a CA, server certificates for the loopback names, gateways' client certificates, and
//! expired ones. Every file is PEM, written into the directory the CA was made in.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate authority: its certificate in `DIR/NAME-ca.pem`.
pub struct Ca {
    dir: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA's certificate (PEM): what clients trust, or what a server verifies clients by.
    pub pem: PathBuf,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The names a test server on this machine is reached by.
pub const LOOPBACK: &[&str] = &["127.0.0.1", "localhost"];

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("pem", &self.pem)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

impl Ca {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).expect("writing the CA certificate");
        Ca {
            dir: dir.to_owned(),
            cert,
            key,
            pem,
        }
    }

    fn issue(&self, name: &str, sans: &[&str], role: Role, expired: bool) -> Issued {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing the certificate");
        let issued = Issued {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("writing the certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("writing the key");
        issued
    }

    /// A server certificate for `sans` (DNS names or IP addresses).
    pub fn server(&self, name: &str, sans: &[&str]) -> Issued {
        self.issue(name, sans, Role::Server, false)
    }

    /// A server certificate for `sans` that expired in 2021.
    pub fn expired_server(&self, name: &str, sans: &[&str]) -> Issued {
        self.issue(name, sans, Role::Server, true)
    }

    /// A gateway's client certificate naming it `gateway` (its DNS name).
    pub fn client(&self, name: &str, gateway: &str) -> Issued {
        self.issue(name, &[gateway], Role::Client, false)
    }

    /// A client certificate naming `gateway` that expired in 2021.
    pub fn expired_client(&self, name: &str, gateway: &str) -> Issued {
        self.issue(name, &[gateway], Role::Client, true)
    }
}
