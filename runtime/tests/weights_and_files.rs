//! safetensors weights (round trip, metadata, checks, corrupt files) and atomic writes.

use fm_runtime::fsutil::atomic_write;
use fm_runtime::tensor::Tensor;
use fm_runtime::weights::{
    check_tensors, decode_weights, encode_weights, load_weights, save_weights, WeightsMeta,
};
use fm_runtime::ErrorKind;
use ndarray::ArrayD;
use std::path::Path;

fn f32_tensor(shape: &[usize], start: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::F32(
        ArrayD::from_shape_vec(
            shape.to_vec(),
            (0..n).map(|i| start + i as f32 * 0.5).collect(),
        )
        .unwrap(),
    )
}

fn model_state() -> Vec<(String, Tensor)> {
    vec![
        ("dense.kernel".into(), f32_tensor(&[3, 2], 0.25)),
        ("dense.bias".into(), f32_tensor(&[2], -1.0)),
        ("opt/dense.kernel/m".into(), f32_tensor(&[3, 2], 0.0)),
        (
            "opt/step".into(),
            Tensor::I32(ArrayD::from_shape_vec(vec![], vec![42]).unwrap()),
        ),
    ]
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn round_trip_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut meta = WeightsMeta::new("digits_mlp", b"model digits_mlp {}");
    meta.epoch = 3;
    meta.step = 135;
    meta.transforms = Some(r#"{"x":[{"Scale":0.00392156862745098}]}"#.into());
    save_weights(&path, &model_state(), &meta).unwrap();
    let file = load_weights(&path).unwrap();
    let mut expected = model_state();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(file.tensors, expected);
    assert_eq!(file.meta, meta);
    assert_eq!(file.meta.source_sha256.len(), 64);
    assert_eq!(file.meta.fm_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(file.without_optimizer_state().len(), 2);
    assert_eq!(files_in(dir.path()), vec!["w.safetensors"]);
    // The layout NumPy's reader expects: an 8-byte little-endian header length, then JSON.
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["dense.kernel"]["dtype"], "F32");
    assert_eq!(header["dense.kernel"]["shape"], serde_json::json!([3, 2]));
    assert_eq!(header["opt/step"]["dtype"], "I32");
    assert_eq!(header["__metadata__"]["model"], "digits_mlp");
    assert_eq!(header["__metadata__"]["step"], "135");
}

#[test]
fn sha256_of_known_input() {
    assert_eq!(
        fm_runtime::weights::sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn check_names_missing_extra_and_misshaped_tensors() {
    let path = Path::new("init.safetensors");
    let loaded = model_state();
    let expected: Vec<(String, Vec<usize>)> = vec![
        ("dense.kernel".into(), vec![3, 2]),
        ("dense.bias".into(), vec![2]),
        ("opt/dense.kernel/m".into(), vec![3, 2]),
        ("opt/step".into(), vec![]),
    ];
    check_tensors(path, &loaded, &expected).unwrap();

    let mut missing = expected.clone();
    missing.push(("dense_1.kernel".into(), vec![2, 10]));
    let e = check_tensors(path, &loaded, &missing).unwrap_err();
    assert_eq!(e.code(), "E0410");
    assert_eq!(
        e.to_string(),
        "init.safetensors: missing tensor 'dense_1.kernel' (expected shape [2, 10])"
    );

    let extra = &expected[1..];
    let e = check_tensors(path, &loaded, extra).unwrap_err();
    assert_eq!(
        e.to_string(),
        "init.safetensors: unknown tensor 'dense.kernel' (shape [3, 2]): the model has no such tensor"
    );

    let mut misshaped = expected.clone();
    misshaped[1].1 = vec![4];
    let e = check_tensors(path, &loaded, &misshaped).unwrap_err();
    assert_eq!(
        e.to_string(),
        "init.safetensors: tensor 'dense.bias' has shape [2], expected [4]"
    );
}

#[test]
fn corrupt_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = encode_weights(&model_state(), &WeightsMeta::default()).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short", vec![1, 2, 3]),
        ("huge header length", {
            let mut b = good.clone();
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
        ("header not json", {
            let mut b = good.clone();
            b[8] = b'!';
            b
        }),
        ("truncated data", good[..good.len() - 4].to_vec()),
        ("header past the end", good[..8 + n / 2].to_vec()),
    ];
    // Offsets that do not match the shape.
    let mut bad_offsets = good.clone();
    let text = String::from_utf8(bad_offsets[8..8 + n].to_vec()).unwrap();
    let changed = text.replacen("[3,2]", "[3,9]", 1);
    assert_ne!(text, changed);
    bad_offsets[8..8 + n].copy_from_slice(changed.as_bytes());
    cases.push(("wrong shape for offsets", bad_offsets));
    for (what, bytes) in cases {
        let path = dir.path().join("w.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let e = load_weights(&path).expect_err(what);
        assert_eq!(e.kind, ErrorKind::Weights, "{what}: {e}");
        assert!(
            e.to_string().starts_with(&format!("{}:", path.display())),
            "{what}: {e}"
        );
        assert!(decode_weights(&path, &bytes).is_err());
    }
    let e = load_weights(&dir.path().join("nope.safetensors")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MissingFile);
}

#[test]
fn bad_metadata_numbers_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut meta = WeightsMeta::default();
    meta.other.insert("note".into(), "kept".into());
    let bytes = encode_weights(&model_state(), &meta).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let patched = header.replacen("\"step\":\"0\"", "\"step\":\"x\"", 1);
    assert_ne!(header, patched);
    let mut bad = bytes.clone();
    bad[8..8 + n].copy_from_slice(patched.as_bytes());
    let path = dir.path().join("m.safetensors");
    let e = decode_weights(&path, &bad).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(e.to_string().contains("metadata 'step' is 'x'"), "{e}");
    // Unknown metadata keys survive a round trip.
    let file = decode_weights(&path, &bytes).unwrap();
    assert_eq!(
        file.meta.other.get("note").map(String::as_str),
        Some("kept")
    );
}

#[test]
fn duplicate_names_are_rejected() {
    let mut state = model_state();
    state.push(("dense.bias".into(), f32_tensor(&[2], 0.0)));
    let e = encode_weights(&state, &WeightsMeta::default()).unwrap_err();
    assert!(e.to_string().contains("'dense.bias' is given twice"), "{e}");
}

#[test]
fn unwritable_directory_names_the_path_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/dir/w.safetensors");
    let e = save_weights(&missing_dir, &model_state(), &WeightsMeta::default()).unwrap_err();
    assert_eq!(e.code(), "E0411");
    assert!(
        e.to_string()
            .starts_with(&missing_dir.display().to_string()),
        "{e}"
    );
    // A directory as the destination.
    let e = atomic_write(dir.path(), b"x").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Write);
    // A read-only directory (root ignores permissions, so only check when they apply).
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&ro, perms).unwrap();
    let probe = std::fs::File::create(ro.join("probe"));
    if probe.is_err() {
        let e = atomic_write(&ro.join("w"), b"x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Write);
        assert!(e.to_string().contains("ro/w"), "{e}");
        assert!(files_in(&ro).is_empty());
    } else {
        let _ = std::fs::remove_file(ro.join("probe"));
    }
    assert_eq!(files_in(dir.path()), vec!["ro"]);
}

#[test]
fn dev_full_is_an_error_naming_it() {
    let path = Path::new("/dev/full");
    if !path.exists() {
        return;
    }
    let e = save_weights(path, &model_state(), &WeightsMeta::default()).unwrap_err();
    assert_eq!(e.code(), "E0411");
    assert!(e.to_string().starts_with("/dev/full: cannot write"), "{e}");
    // The device itself is still there (written in place, never renamed over).
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(path)
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn atomic_write_replaces_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.csv");
    atomic_write(&path, b"first version, long long long\n").unwrap();
    atomic_write(&path, b"second\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
    assert_eq!(files_in(dir.path()), vec!["metrics.csv"]);
}

#[test]
fn identical_states_encode_to_identical_bytes() {
    // The metadata used to go through a HashMap, whose order changes from one map to the next.
    let mut meta = WeightsMeta::new("digits_mlp", b"model digits_mlp {}");
    meta.epoch = 3;
    meta.step = 135;
    meta.transforms = Some("{}".into());
    meta.train_state = Some(r#"{"epoch":3}"#.into());
    meta.other.insert("zeta".into(), "1".into());
    meta.other.insert("alpha".into(), "2".into());
    let first = encode_weights(&model_state(), &meta).unwrap();
    for _ in 0..20 {
        assert_eq!(encode_weights(&model_state(), &meta).unwrap(), first);
    }
    // Sorted keys, `__metadata__` first, the header padded to 8 bytes, and readable.
    let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0);
    let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
    assert!(
        header.starts_with(r#"{"__metadata__":{"alpha":"2","epoch":"3","fm_version":"#),
        "{header}"
    );
    let back = decode_weights(Path::new("w"), &first).unwrap();
    assert_eq!(back.meta, meta);
    // No tensors at all is still a valid file.
    let empty = encode_weights(&[], &meta).unwrap();
    assert_eq!(decode_weights(Path::new("w"), &empty).unwrap().meta, meta);
}

#[test]
fn temporary_files_of_killed_writers_are_removed_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    // 999999999 is above Linux's largest process id: no such process runs. Process 1 runs, and
    // so does this one: their files may be being written and stay.
    let stale = ".weights.safetensors.999999999.3.tmp";
    let other_name = ".metrics.jsonl.999999999.0.tmp";
    let live = ".weights.safetensors.1.0.tmp";
    let mine = format!(".weights.safetensors.{}.99.tmp", std::process::id());
    for name in [stale, other_name, live, &mine, "notes.tmp"] {
        std::fs::write(dir.path().join(name), b"partial").unwrap();
    }
    atomic_write(&dir.path().join("weights.safetensors"), b"whole").unwrap();
    let left = files_in(dir.path());
    if Path::new("/proc/self").exists() {
        assert_eq!(
            left,
            vec![
                live.to_string(),
                mine,
                "notes.tmp".into(),
                "weights.safetensors".into()
            ]
        );
    } else {
        assert_eq!(left.len(), 6);
    }
}
