//! `fleetctl artifact`: sign payloads into a bundle, verify a bundle against a root, inspect one.

use anyhow::{Context, Result, bail};
use artifact::{
    Bundle, Component, ComponentKind, DocumentType, Envelope, Manifest, Policy, TrustRoot, Version,
    bundle, sha256,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Sign a firmware image or a model with its validation set into a bundle.
    ///
    /// Example: fleetctl artifact sign --kind model --name vibration --version 1.4.0
    /// --security-counter 12 --board mps2-an386 --model good.tflite --validation-set good.vset
    /// --min-accuracy 0.9 --max-latency-us 10000 --max-accuracy-drop 0.02 --key keys/release.key
    /// --out vibration-1.4.0.bundle
    Sign(SignArgs),
    /// Verify a bundle against a trust root; exit 0 if valid, else 1 with the reason.
    ///
    /// Example: fleetctl artifact verify --root root.cbor vibration-1.4.0.bundle
    Verify(VerifyArgs),
    /// Show what a bundle holds, without trusting it.
    ///
    /// Example: fleetctl artifact inspect vibration-1.4.0.bundle --json
    Inspect {
        bundle: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// What a device running OLD would receive of NEW: the delta the fleet server makes at
    /// upload (and the compressed payloads for a device on any other version), without
    /// trusting either bundle. Writes the delta stream with --out.
    ///
    /// Example: fleetctl artifact delta --from agent-1.0.0.bundle agent-1.1.0.bundle
    Delta {
        /// The bundle the device runs.
        #[arg(long)]
        from: PathBuf,
        /// The new bundle.
        bundle: PathBuf,
        /// Write the delta stream (docs/delta-format.md) here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Upload a bundle to the fleet server (which verifies it against the fleet's root).
    ///
    /// Example: fleetctl artifact push vibration-1.4.0.bundle
    Push {
        bundle: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Artifacts on the fleet server.
    ///
    /// Example: fleetctl artifact list --json
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `artifact push` and `artifact list`: the subcommands that talk to the server.
pub fn run_remote(cmd: ArtifactCommand, client: &crate::connection::Client) -> Result<ExitCode> {
    use crate::connection::{cell, print_json, print_table};
    match cmd {
        ArtifactCommand::Push { bundle, json } => {
            let v = client.post_bytes("/api/artifacts", read(&bundle)?)?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "artifact {}: {} {} {} for {} ({} bytes, sha256 {})",
                    v["id"],
                    cell(&v["kind"]),
                    cell(&v["name"]),
                    cell(&v["version"]),
                    cell(&v["boards"]),
                    v["payload_len"],
                    cell(&v["payload_sha256"])
                );
            }
        }
        ArtifactCommand::List { json } => {
            let v = client.get("/api/artifacts")?;
            if json {
                print_json(&v)?;
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        vec![
                            cell(&a["id"]),
                            cell(&a["kind"]),
                            cell(&a["name"]),
                            cell(&a["version"]),
                            cell(&a["security_counter"]),
                            cell(&a["boards"]),
                            cell(&a["payload_len"]),
                            a["bad_reason"]
                                .as_str()
                                .map_or(String::new(), |r| format!("BAD: {r}")),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID", "KIND", "NAME", "VERSION", "COUNTER", "BOARDS", "BYTES", "",
                    ],
                    &rows,
                );
            }
        }
        _ => bail!("not a server command"),
    }
    Ok(ExitCode::SUCCESS)
}

impl ArtifactCommand {
    /// Whether the subcommand talks to the fleet server.
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            ArtifactCommand::Push { .. } | ArtifactCommand::List { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Firmware,
    Model,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    #[arg(long, value_enum)]
    kind: Kind,
    /// Component name, 1-32 characters of [A-Za-z0-9._-].
    #[arg(long)]
    name: String,
    /// Semantic version, MAJOR.MINOR.PATCH.
    #[arg(long)]
    version: String,
    /// Anti-rollback counter; devices refuse anything below what they trust.
    #[arg(long = "security-counter", value_name = "C")]
    security_counter: u64,
    /// Board the release runs on (repeat for several).
    #[arg(long = "board", value_name = "B", required = true)]
    boards: Vec<String>,
    /// Firmware image (for --kind firmware).
    #[arg(long, value_name = "FILE")]
    payload: Option<PathBuf>,
    /// int8 TensorFlow Lite model (for --kind model, or with a firmware to ship both).
    #[arg(long, value_name = "FILE", requires = "validation_set")]
    model: Option<PathBuf>,
    /// Validation set the device runs before it commits to the model.
    #[arg(long = "validation-set", value_name = "FILE", requires = "model")]
    validation_set: Option<PathBuf>,
    /// Minimum accuracy on the validation set: a fraction (0.9) or a percentage (90%).
    #[arg(long = "min-accuracy", value_name = "X", value_parser = parse_fraction_bp)]
    min_accuracy: Option<u16>,
    /// Maximum p99 inference latency, microseconds.
    #[arg(long = "max-latency-us", value_name = "U", default_value_t = artifact::manifest::DEFAULT_MAX_P99_LATENCY_US)]
    max_latency_us: u32,
    /// Maximum accuracy drop against the model replaced: a fraction (0.02) or a percentage.
    #[arg(long = "max-accuracy-drop", value_name = "D", value_parser = parse_fraction_bp)]
    max_accuracy_drop: Option<u16>,
    /// Model-runtime ABI the firmware provides (default 1) or the model requires (default:
    /// the model's own, from its operators and input/output types; never lower).
    #[arg(long = "runtime-abi")]
    runtime_abi: Option<u32>,
    /// Tensor arena bytes the model needs.
    #[arg(long = "arena-size", value_name = "BYTES", default_value_t = 64 * 1024)]
    arena_size: u32,
    /// Secret signing key (repeat to meet a signing threshold).
    #[arg(long = "key", value_name = "S.key", required = true)]
    keys: Vec<PathBuf>,
    /// Check the new bundle against this root before writing it.
    #[arg(long, value_name = "root.cbor")]
    root: Option<PathBuf>,
    #[arg(long, value_name = "X.bundle")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The trusted root.
    #[arg(long, value_name = "root.cbor")]
    root: PathBuf,
    bundle: PathBuf,
    /// Also check that the release is built for this board.
    #[arg(long)]
    board: Option<String>,
}

pub fn run(cmd: ArtifactCommand) -> Result<ExitCode> {
    match cmd {
        ArtifactCommand::Sign(args) => sign(args).map(|()| ExitCode::SUCCESS),
        ArtifactCommand::Verify(args) => verify(args),
        ArtifactCommand::Inspect { bundle, json } => {
            inspect(&bundle, json).map(|()| ExitCode::SUCCESS)
        }
        ArtifactCommand::Delta {
            from,
            bundle,
            out,
            json,
        } => delta_cmd(&from, &bundle, out.as_deref(), json).map(|()| ExitCode::SUCCESS),
        ArtifactCommand::Push { .. } | ArtifactCommand::List { .. } => {
            bail!("needs the fleet server")
        }
    }
}

/// `0.9`, `90%` or `1` to basis points.
pub(crate) fn parse_fraction_bp(s: &str) -> Result<u16, String> {
    let (number, scale) = match s.strip_suffix('%') {
        Some(p) => (p, 100.0),
        None => (s, 1.0),
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    let fraction = v / scale;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!("{s:?} is outside 0..1 (0%..100%)"));
    }
    Ok((fraction * 10_000.0).round() as u16)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| path.display().to_string())
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| path.display().to_string())
}

/// Refuses, before anything is signed, a model the device's runtime cannot load (the reason
/// names the operator or the bound) or a validation set it cannot run on it: a device would
/// otherwise find out only after the download. Returns the runtime ABI to require: the one
/// given, or the model's own.
fn check_model(
    model_path: &Path,
    model_bytes: &[u8],
    set_path: &Path,
    set_bytes: &[u8],
    arena_size: u32,
    runtime_abi: Option<u32>,
) -> Result<u32> {
    let m = model::Model::parse_explained(model_bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: the model runtime cannot load this model: {e}",
            model_path.display()
        )
    })?;
    if m.arena_size > arena_size as usize {
        bail!(
            "{}: needs {} bytes of tensor arena, more than --arena-size {arena_size}",
            model_path.display(),
            m.arena_size
        );
    }
    let runtime_abi = runtime_abi.unwrap_or(m.required_abi());
    if m.required_abi() > runtime_abi {
        bail!(
            "{}: needs model-runtime ABI {} (its operators or float32 input/output), more than --runtime-abi {runtime_abi}",
            model_path.display(),
            m.required_abi()
        );
    }
    let set = model::ValidationSet::parse(set_bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a validation set: {e}", set_path.display()))?;
    // As the device's validation run checks it: elements, classes and the inputs' type.
    let input_type = m.tensors.get(m.input).map(|t| t.ty);
    if set.input_len != m.input_len()
        || set.classes != m.output_len()
        || Some(set.input_type) != input_type
    {
        let name = |t: Option<model::graph::ElemType>| match t {
            Some(model::graph::ElemType::Float32) => "float32",
            _ => "int8",
        };
        bail!(
            "{}: {} inputs of {} values and {} classes, but the model takes {} inputs of {} values and gives {} outputs",
            set_path.display(),
            name(Some(set.input_type)),
            set.input_len,
            set.classes,
            name(input_type),
            m.input_len(),
            m.output_len()
        );
    }
    Ok(runtime_abi)
}

fn sign(args: SignArgs) -> Result<()> {
    let version: Version = args
        .version
        .parse()
        .map_err(|_| anyhow::anyhow!("--version {:?}: expected MAJOR.MINOR.PATCH", args.version))?;
    let firmware = match (args.kind, &args.payload) {
        (Kind::Firmware, Some(p)) => Some(read(p)?),
        (Kind::Firmware, None) => bail!("--kind firmware needs --payload FILE"),
        (Kind::Model, Some(_)) => {
            bail!("--kind model takes --model and --validation-set, not --payload")
        }
        (Kind::Model, None) => None,
    };
    let mut required_abi = None;
    let model = match (&args.model, &args.validation_set) {
        (Some(m), Some(v)) => {
            let (model, set) = (read(m)?, read(v)?);
            required_abi = Some(check_model(
                m,
                &model,
                v,
                &set,
                args.arena_size,
                args.runtime_abi,
            )?);
            Some((model, set))
        }
        _ if args.kind == Kind::Model => {
            bail!("--kind model needs --model FILE and --validation-set FILE")
        }
        _ => None,
    };
    if model.is_none() && (args.min_accuracy.is_some() || args.max_accuracy_drop.is_some()) {
        bail!("--min-accuracy and --max-accuracy-drop apply to models only");
    }
    let component = |kind, payload: &[u8]| -> Result<Component<'_>> {
        Ok(Component {
            kind,
            name: &args.name,
            version,
            size: u32::try_from(payload.len()).context("payload over 4 GiB")?,
            digest: sha256(payload),
        })
    };
    let mut components = heapless::Vec::<_, { artifact::MAX_COMPONENTS }>::new();
    let mut payloads: Vec<&[u8]> = Vec::new();
    if let Some(fw) = &firmware {
        let _ = components.push(component(ComponentKind::Firmware, fw)?);
        payloads.push(fw);
    }
    if let Some((m, v)) = &model {
        let _ = components.push(component(ComponentKind::Model, m)?);
        let _ = components.push(component(ComponentKind::ValidationSet, v)?);
        payloads.extend([m.as_slice(), v.as_slice()]);
    }
    let mut boards = heapless::Vec::new();
    for b in &args.boards {
        if boards.push(b.as_str()).is_err() {
            bail!("at most {} boards", artifact::MAX_BOARDS);
        }
    }
    let has_model = model.is_some();
    let manifest = Manifest {
        security_counter: args.security_counter,
        boards,
        components,
        // A firmware shipped with its model provides at least what the model needs.
        runtime_abi: firmware
            .is_some()
            .then_some(args.runtime_abi.or(required_abi).unwrap_or(1)),
        required_abi,
        arena_size: has_model.then_some(args.arena_size),
        policy: has_model.then(|| Policy {
            min_accuracy_bp: args.min_accuracy.unwrap_or(0),
            max_p99_latency_us: args.max_latency_us,
            max_accuracy_drop_bp: args
                .max_accuracy_drop
                .unwrap_or(artifact::manifest::FULL_ACCURACY_BP),
        }),
    };
    let body = manifest.to_vec().context("invalid manifest")?;
    let signers = args
        .keys
        .iter()
        .map(|p| keys::read_secret(p))
        .collect::<Result<Vec<_>, _>>()?;
    let envelope = Envelope::sign(DocumentType::Manifest, &body, &signers).context("signing")?;
    let bytes = bundle::write(&envelope, &payloads)?;
    if let Some(root_path) = &args.root {
        let root = TrustRoot::from_self_signed(&read(root_path)?)
            .with_context(|| format!("{}: not a valid root", root_path.display()))?;
        bundle::open(&bytes, &root).context("the new bundle does not verify against --root")?;
    }
    write_file(&args.out, &bytes)?;
    println!(
        "{}: wrote {} ({} bytes)",
        summary(&manifest),
        args.out.display(),
        bytes.len()
    );
    Ok(())
}

/// `model vibration 1.4.0 (counter 12; boards a, b)`.
fn summary(m: &Manifest<'_>) -> String {
    let what = m
        .components
        .iter()
        .filter(|c| c.kind != ComponentKind::ValidationSet)
        .map(|c| format!("{} {} {}", c.kind.as_str(), c.name, c.version))
        .collect::<Vec<_>>()
        .join(" + ");
    format!(
        "{what} (counter {}; boards {})",
        m.security_counter,
        m.boards.join(", ")
    )
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let root_bytes = read(&args.root)?;
    let root = TrustRoot::from_self_signed(&root_bytes)
        .with_context(|| format!("{}: not a valid root", args.root.display()))?;
    let bytes = read(&args.bundle)?;
    let checked = bundle::open(&bytes, &root).and_then(|v| {
        if let Some(board) = &args.board {
            if !v.verified.manifest.boards.iter().any(|b| b == board) {
                return Err(artifact::Error::WrongBoard);
            }
        }
        Ok(v)
    });
    match checked {
        Ok(v) => {
            let ids: Vec<String> = v
                .verified
                .envelope
                .signatures
                .iter()
                .map(|s| s.key_id.to_string())
                .collect();
            println!(
                "valid: {}; signed by {}",
                summary(&v.verified.manifest),
                ids.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("invalid: {}: {e}", args.bundle.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The payloads of a bundle as a device downloads them (concatenated in manifest order), and
/// its primary component's name and version.
fn download_payload(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = read(path)?;
    let parsed =
        Bundle::parse(&bytes).with_context(|| format!("{}: not a bundle", path.display()))?;
    let envelope = Envelope::decode(parsed.envelope).context("bad envelope")?;
    let m = Manifest::decode(envelope.body).context("bad manifest")?;
    let total: usize = m.components.iter().map(|c| c.size as usize).sum();
    let payload = parsed.payloads.get(..total).with_context(|| {
        format!(
            "{}: payloads shorter than the manifest says",
            path.display()
        )
    })?;
    let name = m
        .primary()
        .map(|c| format!("{} {}", c.name, c.version))
        .unwrap_or_default();
    Ok((payload.to_vec(), name))
}

fn delta_cmd(from: &Path, to: &Path, out: Option<&Path>, as_json: bool) -> Result<()> {
    let (base, base_name) = download_payload(from)?;
    let (target, name) = download_payload(to)?;
    let stream = delta::encode::delta(&base, &target)?;
    let compressed = delta::encode::compress(&target)?;
    // The stream must rebuild the target exactly, or nothing is written.
    if delta::decode::apply(&base, &stream).ok().as_deref() != Some(&target[..]) {
        bail!(
            "internal error: the delta does not rebuild {}",
            to.display()
        );
    }
    if let Some(path) = out {
        write_file(path, &stream)?;
    }
    let pct = |n: usize| 100.0 * n as f64 / target.len().max(1) as f64;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "from": base_name,
                "to": name,
                "full_bytes": target.len(),
                "delta_bytes": stream.len(),
                "delta_percent": (pct(stream.len()) * 100.0).round() / 100.0,
                "compressed_bytes": compressed.len(),
                "compressed_percent": (pct(compressed.len()) * 100.0).round() / 100.0,
            }))?
        );
        return Ok(());
    }
    println!("{name} from {base_name}: {} bytes in full", target.len());
    println!(
        "  delta       {:>9} bytes ({:.2} %)",
        stream.len(),
        pct(stream.len())
    );
    println!(
        "  compressed  {:>9} bytes ({:.2} %, for a device on another version)",
        compressed.len(),
        pct(compressed.len())
    );
    Ok(())
}

fn inspect(path: &Path, as_json: bool) -> Result<()> {
    let bytes = read(path)?;
    let parsed = Bundle::parse(&bytes).context("not a bundle")?;
    let envelope = Envelope::decode(parsed.envelope).context("bad envelope")?;
    let m = Manifest::decode(envelope.body).context("bad manifest")?;
    let mut rest = parsed.payloads;
    let mut components = Vec::new();
    for c in &m.components {
        let (payload, tail) = rest.split_at(rest.len().min(c.size as usize));
        rest = tail;
        let digest_ok = payload.len() == c.size as usize && sha256(payload) == c.digest;
        components.push(json!({
            "kind": c.kind.as_str(),
            "name": c.name,
            "version": c.version.to_string(),
            "size": c.size,
            "sha256": hex::encode(c.digest),
            "digest_ok": digest_ok,
        }));
    }
    let signatures: Vec<String> = envelope
        .signatures
        .iter()
        .map(|s| s.key_id.to_string())
        .collect();
    let doc = json!({
        "security_counter": m.security_counter,
        "boards": m.boards.as_slice(),
        "runtime_abi": m.runtime_abi,
        "required_abi": m.required_abi,
        "arena_size": m.arena_size,
        "policy": m.policy.map(|p| json!({
            "min_accuracy": f64::from(p.min_accuracy_bp) / 10_000.0,
            "max_p99_latency_us": p.max_p99_latency_us,
            "max_accuracy_drop": f64::from(p.max_accuracy_drop_bp) / 10_000.0,
        })),
        "components": components,
        "signatures": signatures,
        "trailing_bytes": rest.len(),
        "verified": false,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("{}", summary(&m));
    for c in &components {
        println!(
            "  {:<15} {:<20} {:<10} {:>9} bytes  sha256 {}{}",
            c["kind"].as_str().unwrap_or_default(),
            c["name"].as_str().unwrap_or_default(),
            c["version"].as_str().unwrap_or_default(),
            c["size"],
            c["sha256"].as_str().unwrap_or_default(),
            if c["digest_ok"] == true {
                ""
            } else {
                "  DIGEST MISMATCH"
            },
        );
    }
    if let Some(abi) = m.runtime_abi {
        println!("  provides runtime ABI {abi}");
    }
    if let (Some(abi), Some(arena)) = (m.required_abi, m.arena_size) {
        println!("  requires runtime ABI {abi}, tensor arena {arena} bytes");
    }
    if let Some(p) = m.policy {
        println!(
            "  policy: accuracy >= {:.2}%, p99 latency <= {} us, accuracy drop <= {:.2}%",
            f64::from(p.min_accuracy_bp) / 100.0,
            p.max_p99_latency_us,
            f64::from(p.max_accuracy_drop_bp) / 100.0
        );
    }
    println!(
        "  signed by: {} (not verified; use `fleetctl artifact verify --root`)",
        signatures.join(", ")
    );
    Ok(())
}
