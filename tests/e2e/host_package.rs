//! `secret-rotator package`: run the real command, unzip the result and check the layout the
//! Functions host expects (host.json, the binary under host.json's name with mode 0755, one
//! folder per function), and that broken specs refuse to package.

use crate::support::host;

use std::io::Read as _;
use std::path::Path;
use std::process::Command;

fn package_cmd(root: &Path, binary: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_secret-rotator"));
    c.args(["package", "--binary"])
        .arg(binary)
        .arg("--out")
        .arg(out)
        .arg("--root")
        .arg(root);
    c
}

fn package(root: &Path, binary: &Path, out: &Path) -> std::process::Output {
    package_cmd(root, binary, out)
        .output()
        .expect("the binary runs")
}

#[test]
fn package_builds_the_layout_the_host_expects() {
    let tmp = tempfile::tempdir().unwrap();
    // Any file stands in for the Linux binary; the real one is large and slow to deflate here.
    let binary = tmp.path().join("built-binary");
    let binary_bytes = b"\x7fELF pretend binary for the package layout test".to_vec();
    std::fs::write(&binary, &binary_bytes).unwrap();
    let out = tmp.path().join("dist/secret-rotator.zip");

    let o = package(&host::repo_root(), &binary, &out);
    assert!(
        o.status.success(),
        "package failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("secret-rotator.zip"));

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut names: Vec<String> = zip.file_names().map(str::to_string).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "Operate/function.json",
            "Rotate/function.json",
            "RotateSecrets/function.json",
            "SelfTest/function.json",
            "StatusPage/function.json",
            "host.json",
            "secret-rotator",
        ]
    );

    let read = |zip: &mut zip::ZipArchive<std::fs::File>, name: &str| {
        let mut f = zip.by_name(name).unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        (buf, f.unix_mode())
    };
    let (exe, mode) = read(&mut zip, "secret-rotator");
    assert_eq!(exe, binary_bytes);
    assert_eq!(mode.map(|m| m & 0o777), Some(0o755), "the run bit is set");

    let (host_json, mode) = read(&mut zip, "host.json");
    assert_eq!(
        host_json,
        std::fs::read(host::repo_root().join("host.json")).unwrap()
    );
    assert_eq!(mode.map(|m| m & 0o777), Some(0o644));
    for f in secret_rotator::handler::functions::FUNCTION_NAMES {
        let (data, _) = read(&mut zip, &format!("{f}/function.json"));
        let want = std::fs::read(
            host::repo_root()
                .join("function-specs")
                .join(f)
                .join("function.json"),
        )
        .unwrap();
        assert_eq!(data, want, "{f}");
    }

    // The policy file rides along at the root when given, and must be JSON.
    let policy = tmp.path().join("policy.json");
    std::fs::write(&policy, br#"{"credentials": []}"#).unwrap();
    let with_policy = tmp.path().join("with-policy.zip");
    let o = package_cmd(&host::repo_root(), &binary, &with_policy)
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut z = zip::ZipArchive::new(std::fs::File::open(&with_policy).unwrap()).unwrap();
    assert_eq!(read(&mut z, "policy.json").0, br#"{"credentials": []}"#);
    std::fs::write(&policy, b"credentials: []").unwrap();
    let o = package_cmd(&host::repo_root(), &binary, &tmp.path().join("x.zip"))
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("policy.json is not valid JSON"));

    // The same inputs give the same bytes (fixed order and timestamps).
    let again = tmp.path().join("again.zip");
    assert!(
        package(&host::repo_root(), &binary, &again)
            .status
            .success()
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn broken_specs_or_inputs_refuse_to_package() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("app");
    let copy = |rel: &str| {
        let to = root.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(host::repo_root().join(rel), to).unwrap();
    };
    copy("host.json");
    for f in secret_rotator::handler::functions::FUNCTION_NAMES {
        copy(&format!("function-specs/{f}/function.json"));
    }
    let binary = tmp.path().join("bin");
    std::fs::write(&binary, b"x").unwrap();
    let out = tmp.path().join("out.zip");

    // A schedule the host would refuse.
    let timer = root.join("function-specs/RotateSecrets/function.json");
    let good = std::fs::read_to_string(&timer).unwrap();
    std::fs::write(&timer, good.replace("%ROTATION_SCHEDULE%", "0 0 25 * * *")).unwrap();
    let o = package(&root, &binary, &out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("RotateSecrets") && err.contains("hour field"),
        "{err}"
    );
    assert!(!out.exists(), "no zip is written");
    std::fs::write(&timer, good).unwrap();

    // A missing binary.
    let o = package(&root, &tmp.path().join("nope"), &out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a file"));

    // host.json that is not JSON.
    std::fs::write(root.join("host.json"), "{").unwrap();
    let o = package(&root, &binary, &out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("host.json is not valid JSON"));
    assert!(!out.exists());
}
