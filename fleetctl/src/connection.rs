//! Where the fleet server is and who we are to it: flags, else the environment (FLEET_SERVER,
//! FLEET_TOKEN, FLEET_CA_FILE), else a profile of the config file. And the HTTP(S) client that
//! turns every failure into one clear line.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Fleet server address, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true, env = "FLEET_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Operator token.
    #[arg(
        long,
        global = true,
        env = "FLEET_TOKEN",
        value_name = "T",
        hide_env_values = true
    )]
    token: Option<String>,
    /// CA certificates (PEM) of an https:// server, trusted instead of the public roots.
    #[arg(long, global = true, env = "FLEET_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Profile of the config file to use (else its `default`).
    #[arg(long, global = true, env = "FLEET_PROFILE", value_name = "NAME")]
    profile: Option<String>,
    /// Config file [default: $XDG_CONFIG_HOME/fleetctl/config.toml or ~/.config/fleetctl/config.toml].
    #[arg(long, global = true, env = "FLEETCTL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The config file: named profiles, and which one is the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    default: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    server: Option<String>,
    token: Option<String>,
    ca_file: Option<PathBuf>,
}

fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("fleetctl").join("config.toml"))
}

impl ConnectionArgs {
    /// Resolves flags, environment and profile into a client.
    pub fn client(&self) -> Result<Client> {
        let path = self.config.clone().or_else(default_config_path);
        let file: ConfigFile = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
                toml::from_str(&text).with_context(|| p.display().to_string())?
            }
            Some(p) if self.config.is_some() => bail!("{}: no such file", p.display()),
            _ => ConfigFile::default(),
        };
        let profile = match self.profile.as_ref().or(file.default.as_ref()) {
            Some(name) => file
                .profiles
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow!("no profile {name:?} in the config file"))?,
            None => Profile::default(),
        };
        let server = self
            .server
            .clone()
            .or(profile.server)
            .ok_or_else(|| anyhow!("no server: give --server, FLEET_SERVER or a profile"))?;
        let token = self
            .token
            .clone()
            .or(profile.token)
            .ok_or_else(|| anyhow!("no token: give --token, FLEET_TOKEN or a profile"))?;
        let mut http =
            reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(ca) = self.ca_file.clone().or(profile.ca_file) {
            http = trust_only(http, &ca)?;
        }
        Ok(Client {
            base: server.trim_end_matches('/').to_owned(),
            token,
            http: http.build()?,
        })
    }
}

/// `builder` trusting only the certificates of the PEM file `ca` (a private CA).
fn trust_only(
    builder: reqwest::blocking::ClientBuilder,
    ca: &std::path::Path,
) -> Result<reqwest::blocking::ClientBuilder> {
    let pem = std::fs::read(ca).with_context(|| format!("--ca-file {}", ca.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow!("--ca-file {}: {e}", ca.display()))?;
    if certs.is_empty() {
        bail!("--ca-file {}: no PEM certificate in it", ca.display());
    }
    Ok(certs
        .into_iter()
        .fold(builder.tls_built_in_root_certs(false), |b, c| {
            b.add_root_certificate(c)
        }))
}

#[derive(Debug)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Client {
    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Value> {
        let resp = req.bearer_auth(&self.token).send().map_err(|e| {
            // reqwest's chain ends in the OS error ("Connection refused"); show that.
            let mut cause = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                cause = s.to_string();
                source = s.source();
            }
            if cause.starts_with("invalid peer certificate") {
                return anyhow!(
                    "the fleet server at {} has a certificate this client does not trust ({cause}): give the CA that signed it with --ca-file or FLEET_CA_FILE",
                    self.base
                );
            }
            anyhow!("cannot reach the fleet server at {}: {cause}", self.base)
        })?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"].as_str().unwrap_or("");
        let message = body["message"].as_str().unwrap_or("");
        match status.as_u16() {
            401 => bail!(
                "the server refused the token (401): check --token, FLEET_TOKEN or the profile"
            ),
            403 => bail!("this token's role may not do that (403 forbidden)"),
            404 => bail!("not found (404): {message}"),
            _ if !code.is_empty() => bail!("the server refused it ({status}): {message} [{code}]"),
            _ => bail!("the server answered {status}"),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    pub fn post_bytes(&self, path: &str, body: Vec<u8>) -> Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/octet-stream")
                .body(body),
        )
    }
}

/// Prints `v` as pretty JSON (the `--json` of every listing).
pub fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A plain table: a header and rows, columns padded to their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// A JSON value as a table cell: strings bare, null as "-".
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
