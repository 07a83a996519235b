//! Records the git revision the binary was built from, for `run.json`: `git describe`
//! with `-dirty` when the work tree had uncommitted changes.

fn main() {
    let revision = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SCRATCHNET_GIT_REVISION={revision}");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/index");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    // An edited, unstaged source changes none of the above but makes the tree dirty: watch
    // the sources too (cargo scans a directory for any change).
    println!("cargo:rerun-if-changed=../../crates");
    println!("cargo:rerun-if-changed=../../recipes");
    println!("cargo:rerun-if-changed=../../Cargo.toml");
}
