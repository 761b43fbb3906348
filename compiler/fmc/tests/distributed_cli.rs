//! Without the `mpi` feature, fmc refuses MPI training with a message that says how to get it.
#![cfg(not(feature = "mpi"))]

use std::process::Command;

#[test]
fn distributed_mpi_needs_the_feature() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/digits_mlp.fm");
    let out = Command::new(env!("CARGO_BIN_EXE_fmc"))
        .args(["train", file, "--distributed", "mpi", "--steps", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`--distributed mpi` needs an fmc built with MPI support")
            && err.contains("--features mpi"),
        "{err}"
    );
}

#[test]
fn several_ranks_without_the_feature_is_an_error() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/digits_mlp.fm");
    let out = Command::new(env!("CARGO_BIN_EXE_fmc"))
        .args(["train", file, "--steps", "1"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("MPI launcher with 2 ranks"), "{err}");
}
