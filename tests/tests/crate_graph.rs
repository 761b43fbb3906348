//! The crate graph: what a user crate compiles when it depends on `fm` (and, through it, on the
//! `model!` macro and the compiler core) must not include the JIT's Cranelift or the CLI's clap.

use std::path::Path;
use std::process::Command;

fn cargo_tree(package: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "tree",
            "--offline",
            "--locked",
            "--prefix",
            "none",
            "-e",
            "normal,build",
        ])
        .args(["-p", package])
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn crate_names(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

fn assert_free_of_jit_and_cli(package: &str) {
    let tree = cargo_tree(package);
    let names = crate_names(&tree);
    assert!(names.contains(&package), "{tree}");
    let banned: Vec<&&str> = names
        .iter()
        .filter(|n| {
            n.starts_with("cranelift") || n.starts_with("clap") || **n == "fm-jit" || **n == "fmc"
        })
        .collect();
    assert!(
        banned.is_empty(),
        "`cargo tree -p {package}` includes {banned:?}:\n{tree}"
    );
}

#[test]
fn fm_needs_neither_cranelift_nor_clap() {
    assert_free_of_jit_and_cli("fm");
}

#[test]
fn the_compiler_core_needs_neither_cranelift_nor_clap() {
    assert_free_of_jit_and_cli("fm-compiler");
}

#[test]
fn interop_needs_neither_cranelift_nor_clap() {
    assert_free_of_jit_and_cli("fm-interop");
}

#[test]
fn the_check_sees_cranelift_and_clap_where_they_are() {
    // A check that cannot fail is no check: the JIT and the driver do show them.
    assert!(crate_names(&cargo_tree("fm-jit")).contains(&"cranelift-codegen"));
    assert!(crate_names(&cargo_tree("fmc")).contains(&"clap"));
}
