// Shared by the build scripts (`include!`d): the package's memory.x (and device.x) for
// cortex-m-rt, and the trust root's path (FLEET_TRUST_ROOT).

/// Puts memory.x (and device.x, when the package has one) where the linker finds them.
fn link_scripts(out: &std::path::Path) {
    std::fs::copy("memory.x", out.join("memory.x")).unwrap();
    // A package with its own interrupt table ships a device.x (cortex-m-rt's `device` feature
    // includes one); others get theirs from their PAC.
    if std::path::Path::new("device.x").exists() {
        std::fs::copy("device.x", out.join("device.x")).unwrap();
        println!("cargo:rerun-if-changed=device.x");
    } else {
        let _ = std::fs::remove_file(out.join("device.x"));
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
}

/// The signed trust root document to bake in (`fleetctl keys root --out ...`).
fn trust_root_path() -> String {
    println!("cargo:rerun-if-env-changed=FLEET_TRUST_ROOT");
    let root = std::env::var("FLEET_TRUST_ROOT").expect(
        "set FLEET_TRUST_ROOT to the signed trust root to bake in (cargo xtask firmware does)",
    );
    println!("cargo:rerun-if-changed={root}");
    root
}
