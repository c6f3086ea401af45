//! `fleetctl` against a real fleet server in this process, with simulated devices (the real
//! agent over HTTP): enrol, push, a staged rollout that completes, one that halts, pause and
//! resume, abort, and every error an operator or a pipeline meets.

use artifact::Version;
use fleet_server::server::{Config, start_background};
use fleet_sim::{DeviceConfig, Faults, Fleet, fixtures, release};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

struct Env {
    base: String,
    token: String,
    dir: tempfile::TempDir,
    /// The CA of an HTTPS server (FLEET_CA_FILE), made for the test.
    ca: Option<PathBuf>,
}

fn server() -> Env {
    start(false)
}

/// The server over HTTPS, its certificate from a CA made for the test.
fn tls_server() -> Env {
    start(true)
}

fn start(tls: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: Some("127.0.0.1:0".into()),
        data: Some(dir.path().join("data")),
        poll_seconds: Some(1),
        tick_ms: Some(200),
        workers: Some(2),
        ..Config::default()
    };
    let mut ca_pem = None;
    if tls {
        let ca = testkit::tls::Ca::new(dir.path(), "fleet");
        let cert = ca.server("server", testkit::tls::LOOPBACK);
        config.tls_cert = Some(cert.cert);
        config.tls_key = Some(cert.key);
        ca_pem = Some(ca.pem);
    }
    let running = start_background(config, testkit::keys::trust_root()).unwrap();
    Env {
        base: running.base,
        token: running.admin_token,
        dir,
        ca: ca_pem,
    }
}

/// Runs fleetctl with the server and token in the environment, as a pipeline would.
fn fleetctl(env: &Env, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetctl"));
    cmd.current_dir(env.dir.path())
        .env("FLEET_SERVER", &env.base)
        .env("FLEET_TOKEN", &env.token)
        .env("XDG_CONFIG_HOME", env.dir.path())
        .env_remove("FLEET_PROFILE")
        .env_remove("FLEETCTL_CONFIG")
        .env_remove("FLEET_CA_FILE");
    if let Some(ca) = &env.ca {
        cmd.env("FLEET_CA_FILE", ca);
    }
    cmd.args(args).output().unwrap()
}

fn ok(env: &Env, args: &[&str]) -> String {
    let out = fleetctl(env, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(env: &Env, args: &[&str]) -> Value {
    serde_json::from_str(&ok(env, args)).unwrap()
}

/// A failed run: its exit code and its one line of stderr.
fn fails(env: &Env, args: &[&str]) -> (i32, String) {
    let out = fleetctl(env, args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
    (out.status.code().unwrap(), stderr)
}

fn write_bundle(dir: &Path, name: &str, f: &fixtures::Fixture, version: Version, counter: u64) {
    let b = release::model_bundle(
        f,
        "digits",
        version,
        counter,
        "mps2-an386",
        release::STRICT,
        &[testkit::keys::signing_key()],
    )
    .unwrap();
    std::fs::write(dir.join(name), b).unwrap();
}

/// Enrols `n` devices with fleetctl and starts them.
fn devices(env: &Env, n: usize) -> Arc<Fleet> {
    let fleet = Fleet::with_ca(&env.base, testkit::keys::trust_root(), env.ca.as_deref()).unwrap();
    for i in 0..n {
        let id = format!("node-{:02}", i + 1);
        let tag = format!("line-{}", i % 2 + 1);
        let out = ok(
            env,
            &[
                "devices",
                "enroll",
                "--id",
                &id,
                "--board",
                "mps2-an386",
                "--tag",
                &tag,
            ],
        );
        let credential = out
            .lines()
            .find_map(|l| l.strip_prefix("credential: "))
            .unwrap()
            .to_owned();
        fleet
            .spawn(DeviceConfig {
                id,
                credential,
                board: "mps2-an386",
                slowdown: 1,
                runtime_abi: fleet_sim::device::RUNTIME_ABI,
                faults: Faults::default(),
            })
            .unwrap();
    }
    fleet
}

/// The verdicts `rollout status` shows for the current stage's gates are the server's, gate by
/// gate (`ok`, `FAILED`, or nothing while waiting).
fn assert_shown_verdicts_are_the_servers(env: &Env, id: &str) {
    let v = json(env, &["rollout", "status", id, "--json"]);
    let text = ok(env, &["rollout", "status", id]);
    let shown: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("gates of stage"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| match l.trim_end() {
            l if l.ends_with(" ok") => "ok",
            l if l.ends_with(" FAILED") => "failed",
            _ => "waiting",
        })
        .collect();
    let server: Vec<&str> = v["stages"][v["stage"].as_u64().unwrap() as usize]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["verdict"].as_str().unwrap())
        .collect();
    assert!(!server.is_empty(), "{v:#}");
    assert_eq!(shown, server, "{text}");
}

fn push(env: &Env, file: &str) -> String {
    json(env, &["artifact", "push", file, "--json"])["id"].to_string()
}

#[test]
fn staged_deploys_from_the_terminal() {
    staged_deploys(server());
}

/// The same over HTTPS: fleetctl and the devices trust the server's CA (FLEET_CA_FILE).
#[test]
fn staged_deploys_from_the_terminal_over_tls() {
    let env = tls_server();
    assert!(env.base.starts_with("https://127.0.0.1:"), "{}", env.base);
    staged_deploys(env);
}

fn staged_deploys(env: Env) {
    let fleet = devices(&env, 8);
    let d = env.dir.path();
    write_bundle(d, "good.bundle", &fixtures::GOOD, Version::new(1, 0, 0), 1);
    write_bundle(
        d,
        "regressed.bundle",
        &fixtures::REGRESSED,
        Version::new(1, 1, 0),
        2,
    );
    write_bundle(
        d,
        "good-2.bundle",
        &fixtures::GOOD,
        Version::new(1, 2, 0),
        3,
    );
    let good = push(&env, "good.bundle");
    let regressed = push(&env, "regressed.bundle");
    let good2 = push(&env, "good-2.bundle");
    let listed = json(&env, &["artifact", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(ok(&env, &["artifact", "list"]).contains("digits"));
    let line1 = json(&env, &["devices", "list", "--tag", "line-1", "--json"]);
    assert_eq!(line1.as_array().unwrap().len(), 4);
    let table = ok(&env, &["devices", "list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert_eq!(table.lines().count(), 9);

    // A rollout that completes: `status --watch --wait` exits 0.
    let created = json(
        &env,
        &[
            "rollout",
            "create",
            "--artifact",
            &good,
            "--stages",
            "25%,100%",
            "--soak",
            "0s",
            "--min-accuracy",
            "0.9",
            "--max-latency-ms",
            "10",
            "--max-failure-rate",
            "0%",
            "--json",
        ],
    );
    let id = created["id"].to_string();
    let out = fleetctl(&env, &["rollout", "status", &id, "--watch", "--wait"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(": completed"), "{text}");
    assert!(text.contains("[####################]   2/2"), "{text}");
    assert!(text.contains("min accuracy"), "{text}");
    assert_shown_verdicts_are_the_servers(&env, &id);
    // What the server sent the devices, as the view counts it: the total shown is its sum.
    let v = json(&env, &["rollout", "status", &id, "--json"]);
    let sent: u64 = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["bytes_sent"].as_u64().unwrap())
        .sum();
    assert!(sent > 0, "{v:#}");
    assert!(
        text.contains(&format!("bytes sent: {sent} to 8 devices")),
        "{text}"
    );
    let show = json(&env, &["devices", "show", "node-01", "--json"]);
    let steps: Vec<&str> = show["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["downloaded", "validated", "confirmed"]);

    // One that halts: exit 2, the failed gate named.
    let id = json(
        &env,
        &[
            "rollout",
            "create",
            "--artifact",
            &regressed,
            "--selector",
            "tag=line-1",
            "--stages",
            "1,100%",
            "--min-accuracy",
            "90%",
            "--json",
        ],
    )["id"]
        .to_string();
    let out = fleetctl(&env, &["rollout", "status", &id, "--wait"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("halted (gate min_accuracy failed)"), "{text}");
    let gate = text.lines().find(|l| l.contains("min accuracy")).unwrap();
    assert!(
        gate.contains("59.72%") && gate.contains(">= 90.00%") && gate.ends_with("FAILED"),
        "{gate}"
    );
    assert_shown_verdicts_are_the_servers(&env, &id);
    // The canary that rejected it runs the good model, with the good model's figures, and shows
    // the rejected release apart, by version.
    let canary = json(&env, &["rollout", "status", &id, "--json"])["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["stage"] == 0)
        .unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let table = ok(&env, &["devices", "list"]);
    let row = table.lines().find(|l| l.starts_with(&canary)).unwrap();
    assert!(
        row.contains(" 1.0.0 ") && row.contains("92.77%") && row.contains("1.1.0: 59.72% / "),
        "{table}"
    );

    // Pause and resume, then abort: exit 3. Created as the text says it, with how many devices
    // cannot run the model's runtime ABI (all 8 run today's).
    let out = ok(
        &env,
        &[
            "rollout",
            "create",
            "--artifact",
            &good2,
            "--stages",
            "2,100%",
            "--soak",
            "1h",
        ],
    );
    let id = out
        .strip_prefix("rollout ")
        .and_then(|r| r.split_once(' '))
        .unwrap()
        .0
        .to_owned();
    assert_eq!(
        out,
        format!(
            "rollout {id} started: model digits 1.2.0 to 8 devices in stages of 2 + 6\n\
             runtime ABI 1: 0 of the selected devices cannot run it (older firmware), 0 of \
             unknown ABI\n"
        )
    );
    assert_eq!(
        ok(&env, &["rollout", "pause", &id]),
        format!("rollout {id}: paused\n")
    );
    let (code, err) = fails(&env, &["rollout", "pause", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("[invalid_state]"), "{err}");
    assert_eq!(
        ok(&env, &["rollout", "resume", &id]),
        format!("rollout {id}: running\n")
    );
    assert_eq!(
        ok(&env, &["rollout", "abort", &id]),
        format!("rollout {id}: aborted\n")
    );
    let out = fleetctl(&env, &["rollout", "status", &id, "--wait"]);
    assert_eq!(out.status.code(), Some(3));
    let list = ok(&env, &["rollout", "list"]);
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(list.contains("min_accuracy"), "{list}");
    fleet.stop();
}

#[test]
fn errors_are_one_clear_line() {
    let env = server();
    // Unreachable.
    let out = Command::new(env!("CARGO_BIN_EXE_fleetctl"))
        .args([
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "x",
            "rollout",
            "list",
        ])
        .env("XDG_CONFIG_HOME", env.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.starts_with("fleetctl: error: cannot reach the fleet server at http://127.0.0.1:9"),
        "{err}"
    );
    // A wrong token.
    let bad = Env {
        token: "wrong".into(),
        base: env.base.clone(),
        dir: tempfile::tempdir().unwrap(),
        ca: None,
    };
    let (code, err) = fails(&bad, &["devices", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("refused the token (401)"), "{err}");
    // A viewer acting.
    let token = reqwest::blocking::Client::new()
        .post(format!("{}/api/tokens", env.base))
        .bearer_auth(&env.token)
        .json(&serde_json::json!({"name": "watcher", "role": "viewer"}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let viewer = Env {
        token,
        base: env.base.clone(),
        dir: tempfile::tempdir().unwrap(),
        ca: None,
    };
    ok(&viewer, &["devices", "list"]);
    let (code, err) = fails(
        &viewer,
        &["devices", "enroll", "--id", "n1", "--board", "mps2-an386"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");
    // Validation errors from the server, and from the command line.
    ok(
        &env,
        &["devices", "enroll", "--id", "n1", "--board", "mps2-an386"],
    );
    let (_, err) = fails(
        &env,
        &["devices", "enroll", "--id", "n1", "--board", "mps2-an386"],
    );
    assert!(err.contains("[conflict]"), "{err}");
    write_bundle(
        env.dir.path(),
        "good.bundle",
        &fixtures::GOOD,
        Version::new(1, 0, 0),
        1,
    );
    let id = push(&env, "good.bundle");
    let (_, err) = fails(
        &env,
        &["rollout", "create", "--artifact", &id, "--stages", "0%"],
    );
    assert!(err.contains("[invalid_rollout]"), "{err}");
    let (_, err) = fails(
        &env,
        &[
            "rollout",
            "create",
            "--artifact",
            &id,
            "--selector",
            "colour=red",
        ],
    );
    assert!(err.contains("give tag=T or board=B"), "{err}");
    let (_, err) = fails(&env, &["rollout", "status", "999"]);
    assert!(err.contains("not found (404)"), "{err}");
    std::fs::write(env.dir.path().join("junk.bundle"), b"junk").unwrap();
    let (_, err) = fails(&env, &["artifact", "push", "junk.bundle"]);
    assert!(
        err.contains("[bad_magic]") || err.contains("[truncated]"),
        "{err}"
    );
    let out = fleetctl(
        &env,
        &["rollout", "create", "--artifact", &id, "--soak", "soon"],
    );
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
}

#[test]
fn profiles_completions_and_examples() {
    let env = server();
    let cfg = env.dir.path().join("fleetctl");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.toml"),
        format!(
            "default = \"nowhere\"\n[profiles.nowhere]\nserver = \"http://127.0.0.1:9\"\ntoken = \"x\"\n[profiles.line]\nserver = \"{}\"\ntoken = \"{}\"\n",
            env.base, env.token
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fleetctl"))
            .env("XDG_CONFIG_HOME", env.dir.path())
            .env_remove("FLEET_SERVER")
            .env_remove("FLEET_TOKEN")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        run(&["--profile", "line", "devices", "list"])
            .status
            .success()
    );
    let default = run(&["devices", "list"]);
    assert!(String::from_utf8_lossy(&default.stderr).contains("127.0.0.1:9"));
    let missing = run(&["--profile", "gone", "devices", "list"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no profile \"gone\""));
    // Flags win over the profile.
    let flags = run(&[
        "--server", &env.base, "--token", &env.token, "devices", "list", "--json",
    ]);
    assert_eq!(String::from_utf8_lossy(&flags.stdout).trim(), "[]");

    let bash = run(&["completions", "bash"]);
    assert!(String::from_utf8_lossy(&bash.stdout).contains("_fleetctl()"));

    for sub in [
        &["artifact", "push"][..],
        &["artifact", "list"],
        &["devices", "list"],
        &["devices", "show"],
        &["devices", "enroll"],
        &["rollout", "create"],
        &["rollout", "list"],
        &["rollout", "status"],
        &["rollout", "pause"],
        &["rollout", "resume"],
        &["rollout", "abort"],
        &["rollout", "rollback"],
        &["completions"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let help = String::from_utf8(run(&args).stdout).unwrap();
        assert!(help.contains("Example:"), "{sub:?}: {help}");
    }
    let status = String::from_utf8(run(&["rollout", "status", "--help"]).stdout).unwrap();
    assert!(status.contains("Exit codes with --wait: 0"), "{status}");
}

/// Over HTTPS: a server certificate the client cannot trust and a CA file that holds none are
/// one clear line each; `--ca-file` and a profile's `ca_file` work as FLEET_CA_FILE does.
#[test]
fn tls_errors_are_one_clear_line() {
    let env = tls_server();
    let as_with = |ca: Option<PathBuf>| Env {
        base: env.base.clone(),
        token: env.token.clone(),
        dir: tempfile::tempdir().unwrap(),
        ca,
    };
    let untrusted = format!(
        "fleetctl: error: the fleet server at {} has a certificate this client does not trust \
         (invalid peer certificate: UnknownIssuer): give the CA that signed it with --ca-file or \
         FLEET_CA_FILE\n",
        env.base
    );
    // Another CA's certificates, or none (the public roots, which lack the test CA).
    let other = testkit::tls::Ca::new(env.dir.path(), "other");
    assert_eq!(
        fails(&as_with(Some(other.pem.clone())), &["devices", "list"]),
        (1, untrusted.clone())
    );
    assert_eq!(fails(&as_with(None), &["devices", "list"]), (1, untrusted));
    // A CA file without a certificate, and one that is not there.
    let junk = env.dir.path().join("junk.pem");
    std::fs::write(&junk, "junk\n").unwrap();
    assert_eq!(
        fails(&as_with(Some(junk.clone())), &["devices", "list"]),
        (
            1,
            format!(
                "fleetctl: error: --ca-file {}: no PEM certificate in it\n",
                junk.display()
            )
        )
    );
    let missing = env.dir.path().join("missing.pem");
    assert_eq!(
        fails(&as_with(Some(missing.clone())), &["devices", "list"]),
        (
            1,
            format!(
                "fleetctl: error: --ca-file {}: No such file or directory (os error 2)\n",
                missing.display()
            )
        )
    );
    // The flag, and a profile's `ca_file`.
    let ca = env.ca.clone().unwrap();
    let plain = as_with(None);
    let listed = ok(
        &plain,
        &["--ca-file", ca.to_str().unwrap(), "devices", "list"],
    );
    assert!(listed.starts_with("ID"), "{listed}");
    std::fs::create_dir_all(plain.dir.path().join("fleetctl")).unwrap();
    std::fs::write(
        plain.dir.path().join("fleetctl/config.toml"),
        format!(
            "default = \"tls\"\n[profiles.tls]\nserver = \"{}\"\ntoken = \"{}\"\nca_file = {:?}\n",
            env.base,
            env.token,
            ca.display().to_string()
        ),
    )
    .unwrap();
    let listed = ok(&plain, &["devices", "list"]);
    assert!(listed.starts_with("ID"), "{listed}");
}

#[test]
fn enrolment_writes_the_identity_record_a_board_is_provisioned_with() {
    let env = server();
    let path = env.dir.path().join("node-41.bin");
    let p = path.to_str().unwrap();
    let out = ok(
        &env,
        &[
            "devices",
            "enroll",
            "--id",
            "node-41",
            "--board",
            "nrf52840-dk",
            "--identity-record",
            p,
        ],
    );
    let credential = out
        .lines()
        .find_map(|l| l.strip_prefix("credential: "))
        .expect("credential line");
    // The nRF52840's identity region is its last 4 KiB page, at 0xFF000 of its mapped flash.
    assert!(
        out.contains(&format!("identity record: {p} (program it at 0x000ff000)")),
        "{out}"
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() % 4, 0);
    let id = agent::provisioning::parse(&bytes).unwrap();
    assert_eq!((id.device_id, id.credential), ("node-41", credential));
    // On the STM32 the address is in the CPU's map (flash at 0x0800_0000), 8-byte writes.
    let path = env.dir.path().join("node-42.bin");
    let v = json(
        &env,
        &[
            "devices",
            "enroll",
            "--id",
            "node-42",
            "--board",
            "nucleo-l4r5zi",
            "--identity-record",
            path.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(v["identity_record_address"], 0x0800_0000u32 + 2044 * 1024);
    assert_eq!(std::fs::read(&path).unwrap().len() % 8, 0);
    // An unknown board is refused before anything is enrolled.
    let (code, err) = fails(
        &env,
        &[
            "devices",
            "enroll",
            "--id",
            "node-43",
            "--board",
            "esp32",
            "--identity-record",
            p,
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no flash layout for board \"esp32\""), "{err}");
    let listed = json(&env, &["devices", "list", "--json"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["id"] != "node-43"),
        "{listed}"
    );
}
