//! Build script of the agent firmware: the package's memory.x (and device.x) for cortex-m-rt,
//! and the trust root document copied in as it is (the bootloaders use bootloader-build.rs).
include!("build-link.rs");

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    link_scripts(&out);
    let root = trust_root_path();
    std::fs::copy(&root, out.join("root.cbor")).unwrap_or_else(|e| panic!("{root}: {e}"));
}
