//! The `dyce` binary as a user runs it.

use std::process::Command;

fn dyce(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dyce")).args(args).output().expect("dyce runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn inspect_builtin_architecture() {
    let (ok, out, _) = dyce(&["inspect", "--arch", "resnet50", "--input", "224"]);
    assert!(ok);
    assert!(out.starts_with("resnet50 at 224x224: 4.0"), "{out}");
    assert!(out.contains("layer4.2"), "{out}");
    assert_eq!(out.lines().count(), 2 + 16);
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    for args in [
        vec!["inspect", "--arch", "resnet7"],
        vec!["inspect", "--model", "/nonexistent/bundle"],
        vec!["inspect", "--arch", "resnet20", "--exit-types", "mlp0"],
        vec!["inspect"],
    ] {
        let (ok, out, err) = dyce(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}
