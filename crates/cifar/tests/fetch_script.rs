//! `data/fetch-cifar10.sh --from MIRROR`: a mirror is copied and verified, a second call
//! does nothing, a wrong or corrupt mirror is refused without touching the destination.
//! Uses a small fake mirror (the script checks names and checksums, not contents); needs
//! bash and sha256sum, and says so when they are missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FILES: [&str; 7] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
    "batches.meta.txt",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fetch-cifar10.sh")
}

fn fetch(args: &[&Path]) -> Output {
    let mut command = Command::new("bash");
    command.arg(script());
    command.arg("--from").arg(args[0]);
    command.args(&args[1..]);
    command.output().expect("bash runs")
}

/// A folder with the seven file names of the CIFAR-10 layout and their SHA256SUMS; `false`
/// when sha256sum is not on this machine.
fn fake_mirror(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    for (i, name) in FILES.iter().enumerate() {
        std::fs::write(dir.join(name), format!("fake contents {i}\n")).unwrap();
    }
    let sums = Command::new("sha256sum")
        .args(FILES)
        .current_dir(dir)
        .output();
    match sums {
        Ok(out) if out.status.success() => {
            std::fs::write(dir.join("SHA256SUMS"), out.stdout).unwrap();
            true
        }
        _ => false,
    }
}

#[test]
fn a_mirror_is_copied_once_and_a_wrong_or_corrupt_one_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mirror, dest) = (tmp.path().join("mirror"), tmp.path().join("dest"));
    if !fake_mirror(&mirror) {
        eprintln!("sha256sum is not available here: the fetch script is not checked");
        return;
    }
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // 1. Copied and verified.
    let out = fetch(&[&mirror, &dest]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in FILES.iter().chain(&["SHA256SUMS"]) {
        assert_eq!(
            std::fs::read(dest.join(name)).unwrap(),
            std::fs::read(mirror.join(name)).unwrap(),
            "{name}"
        );
    }

    // 2. A second call finds it done.
    let out = fetch(&[&mirror, &dest]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));

    // 3. A mirror that is not there is an error, even with DEST complete.
    let out = fetch(&[&tmp.path().join("no-such-mirror"), &dest]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    // 4. A corrupt mirror is refused and nothing is copied.
    std::fs::write(mirror.join("data_batch_3.bin"), "changed\n").unwrap();
    let fresh = tmp.path().join("fresh");
    let out = fetch(&[&mirror, &fresh]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("data_batch_3.bin"),
        "{}",
        stderr(&out)
    );
    assert!(!fresh.exists(), "a refused copy left {}", fresh.display());
}
