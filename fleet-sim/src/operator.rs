//! A small client of the operator API, for the demo and the tests that drive a server the way
//! an operator would.

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Operator {
    pub base: String,
    pub token: String,
    client: reqwest::blocking::Client,
}

impl Operator {
    pub fn new(base: &str, token: &str) -> Operator {
        Operator {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client: reqwest::blocking::Client::new(),
        }
    }

    /// An operator of an `https://` server whose certificate chains to `ca` (PEM; only it is
    /// trusted then), or to the public roots when `ca` is `None`.
    pub fn with_ca(
        base: &str,
        token: &str,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Operator> {
        Ok(Operator {
            client: crate::tls::trust(reqwest::blocking::Client::builder(), ca)?.build()?,
            ..Operator::new(base, token)
        })
    }

    fn check(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let text = resp.text()?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            anyhow::bail!("{status}: {value}");
        }
        Ok(value)
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        Self::check(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .send()?,
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Self::check(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(body)
                .send()?,
        )
    }

    /// Enrols a device; returns its credential.
    pub fn enroll(&self, id: &str, board: &str, tags: &[&str]) -> anyhow::Result<String> {
        let v = self.post(
            "/api/devices",
            &serde_json::json!({ "id": id, "board": board, "tags": tags }),
        )?;
        v["credential"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no credential in {v}"))
    }

    /// Uploads a bundle; returns the artifact id.
    pub fn upload(&self, bundle: Vec<u8>) -> anyhow::Result<i64> {
        let v = Self::check(
            self.client
                .post(format!("{}/api/artifacts", self.base))
                .bearer_auth(&self.token)
                .header("content-type", "application/octet-stream")
                .body(bundle)
                .send()?,
        )?;
        v["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no id in {v}"))
    }

    /// Creates a rollout (the operator API's JSON); returns its id.
    pub fn rollout(&self, spec: &Value) -> anyhow::Result<i64> {
        let v = self.post("/api/rollouts", spec)?;
        v["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no id in {v}"))
    }

    /// Waits until rollout `id` leaves `running`/`paused`; returns its final view.
    pub fn wait_rollout(&self, id: i64, timeout: std::time::Duration) -> anyhow::Result<Value> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let v = self.get(&format!("/api/rollouts/{id}"))?;
            let state = v["state"].as_str().unwrap_or_default();
            if state != "running" && state != "paused" {
                return Ok(v);
            }
            if std::time::Instant::now() > until {
                anyhow::bail!("rollout {id} still {state} after {timeout:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Waits until no device of rollout `id` is still going back; returns its view.
    pub fn wait_reverted(&self, id: i64, timeout: std::time::Duration) -> anyhow::Result<Value> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let v = self.get(&format!("/api/rollouts/{id}"))?;
            let going_back = v["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["state"] == "reverting");
            if !going_back {
                return Ok(v);
            }
            if std::time::Instant::now() > until {
                anyhow::bail!("rollout {id}: devices still going back after {timeout:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
