//! memory.x for cortex-m-rt, and the trust root baked into the bootloader (FLEET_TRUST_ROOT).
fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-env-changed=FLEET_TRUST_ROOT");
    let root = std::env::var("FLEET_TRUST_ROOT").expect(
        "set FLEET_TRUST_ROOT to the signed trust root to bake in (cargo xtask firmware does)",
    );
    println!("cargo:rerun-if-changed={root}");
    std::fs::copy(&root, out.join("root.cbor")).unwrap_or_else(|e| panic!("{root}: {e}"));
}
