//! `fleetctl keys`: generate key pairs, build and sign trust roots (first ones and rotations).

use anyhow::{Context, Result, bail};
use artifact::{DocumentType, Envelope, PublicKey, TrustRoot};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 key pair: DIR/NAME.key (mode 0600) and DIR/NAME.pub.
    ///
    /// Example: fleetctl keys generate --out keys --name root-1
    Generate {
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Base name of the two files.
        #[arg(long, value_name = "N")]
        name: String,
    },
    /// Build and sign a trust root (a first root, or the next one in a rotation).
    ///
    /// Example: fleetctl keys root --threshold 2 --root-key keys/r1.pub --root-key keys/r2.pub
    /// --root-key keys/r3.pub --signing-key keys/release.pub --sign-with keys/r1.key
    /// --sign-with keys/r2.key --out root.cbor
    Root(RootArgs),
}

#[derive(Debug, Args)]
pub struct RootArgs {
    /// How many root keys must sign a root document (k of n).
    #[arg(long, value_name = "K")]
    threshold: u8,
    /// A root key's public half (repeat for each).
    #[arg(long = "root-key", value_name = "A.pub", required = true)]
    root_keys: Vec<PathBuf>,
    /// An artifact-signing key's public half (repeat for each).
    #[arg(long = "signing-key", value_name = "S.pub", required = true)]
    signing_keys: Vec<PathBuf>,
    /// How many signing keys must sign a manifest.
    #[arg(long = "signing-threshold", value_name = "K2", default_value_t = 1)]
    signing_threshold: u8,
    /// Secret root keys to sign with (repeat); for a rotation, a threshold of the old and of
    /// the new root keys.
    #[arg(long = "sign-with", value_name = "A.key", required = true)]
    sign_with: Vec<PathBuf>,
    /// Root version; a rotation uses the trusted version plus one.
    #[arg(long, default_value_t = 1)]
    version: u32,
    /// The currently trusted root: check that devices will accept this one as its successor.
    #[arg(long, value_name = "root.cbor")]
    previous: Option<PathBuf>,
    /// Where to write the signed root.
    #[arg(long, value_name = "root.cbor")]
    out: PathBuf,
}

pub fn run(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out, name } => {
            let key = keys::generate()?;
            let (secret, public) = keys::write_keypair(&out, &name, &key)?;
            let id = keys::public_of(&key).id();
            println!(
                "key id {id}: wrote {} and {}",
                secret.display(),
                public.display()
            );
        }
        KeysCommand::Root(args) => root(args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn read_publics(paths: &[PathBuf]) -> Result<heapless::Vec<PublicKey, { artifact::MAX_KEYS }>> {
    let mut out = heapless::Vec::new();
    for p in paths {
        if out.push(keys::read_public(p)?).is_err() {
            bail!("at most {} keys per role", artifact::MAX_KEYS);
        }
    }
    Ok(out)
}

fn root(args: RootArgs) -> Result<()> {
    let root = TrustRoot {
        version: args.version,
        root_keys: read_publics(&args.root_keys)?,
        root_threshold: args.threshold,
        signing_keys: read_publics(&args.signing_keys)?,
        signing_threshold: args.signing_threshold,
    };
    let body = root.to_vec().context("invalid root")?;
    let signers = args
        .sign_with
        .iter()
        .map(|p| keys::read_secret(p))
        .collect::<Result<Vec<_>, _>>()?;
    let signed = Envelope::sign(DocumentType::Root, &body, &signers).context("signing the root")?;
    // Refuse to write a root that devices would refuse.
    match &args.previous {
        Some(prev) => {
            let old = std::fs::read(prev).with_context(|| prev.display().to_string())?;
            let old = TrustRoot::from_self_signed(&old)
                .with_context(|| format!("{}: not a valid root", prev.display()))?;
            old.rotate(&signed)
                .context("not a valid rotation of the previous root")?;
        }
        None => {
            TrustRoot::from_self_signed(&signed).context("root not signed by its own threshold")?;
        }
    }
    crate::artifact_cmd::write_file(&args.out, &signed)?;
    println!(
        "root v{}: {} of {} root keys, {} of {} signing keys: wrote {}",
        root.version,
        root.root_threshold,
        root.root_keys.len(),
        root.signing_threshold,
        root.signing_keys.len(),
        args.out.display()
    );
    Ok(())
}
