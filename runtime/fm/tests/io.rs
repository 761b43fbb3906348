//! `fm::io`: `.npy` round trips through the user-facing package.

use fm::ndarray::{arr2, ArrayD};
use fm::Tensor;

#[test]
fn npy_round_trips_f32_and_i32() {
    let dir = tempfile::tempdir().unwrap();
    let f32_path = dir.path().join("x.npy");
    let x = Tensor::F32(arr2(&[[1.5f32, -2.0, 3.25], [0.0, 1e-30, f32::MAX]]).into_dyn());
    fm::io::write_npy(&f32_path, &x).unwrap();
    assert_eq!(fm::io::read_npy(&f32_path).unwrap(), x);

    let i32_path = dir.path().join("y.npy");
    let y = Tensor::I32(ArrayD::from_shape_vec(vec![4], vec![7, -1, 0, i32::MAX]).unwrap());
    fm::io::write_npy(&i32_path, &y).unwrap();
    assert_eq!(fm::io::read_npy(&i32_path).unwrap(), y);
}

#[test]
fn read_npy_names_the_file_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.npy");
    let err = fm::io::read_npy(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.npy"), "{err}");

    let not_npy = dir.path().join("text.npy");
    std::fs::write(&not_npy, "hello").unwrap();
    let err = fm::io::read_npy(&not_npy).unwrap_err().to_string();
    assert!(
        err.contains("text.npy") && err.contains("not an .npy file"),
        "{err}"
    );
}
