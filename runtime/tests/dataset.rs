//! Loading `data` sections for a model: splits, conversion, transforms, and their errors.

use fm_runtime::config::{DataSpec, NpzKeys, Source, TestSource, Transform};
use fm_runtime::data::batch::{batch_count, epoch_order, epoch_permutation, SplitMix64};
use fm_runtime::data::idx::encode_idx;
use fm_runtime::data::npy::{encode_npy, encode_npz};
use fm_runtime::data::{load_data, prepare, read_xy, LoadOptions, ModelData, RawData, TensorSpec};
use fm_runtime::tensor::{DType, Tensor};
use fm_runtime::ErrorKind;
use std::path::{Path, PathBuf};

fn digits(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data")
        .join(name)
}

fn digits_spec(x: Vec<Transform>) -> DataSpec {
    DataSpec {
        name: "digits".into(),
        train: Source::Idx {
            images: digits("digits-images-idx3-ubyte"),
            labels: digits("digits-labels-idx1-ubyte"),
        },
        test: Some(TestSource::Split(0.2)),
        x,
        y: vec![],
    }
}

fn classifier(input: &[usize]) -> ModelData {
    ModelData {
        inputs: vec![TensorSpec::new("image", DType::F32, input)],
        targets: vec![TensorSpec::new("probs", DType::I32, &[]).with_classes(10)],
    }
}

fn class_counts(t: &Tensor) -> [usize; 10] {
    let mut c = [0; 10];
    t.as_i32().unwrap().iter().for_each(|&l| c[l as usize] += 1);
    c
}

#[test]
fn digits_split_1437_360_with_readme_class_counts() {
    let data = load_data(
        &digits_spec(vec![Transform::Scale {
            factor: 1.0 / 255.0,
            offset: 0.0,
        }]),
        &classifier(&[8, 8]),
        LoadOptions::default(),
    )
    .unwrap();
    let test = data.test.unwrap();
    assert_eq!((data.train.len(), test.len()), (1437, 360));
    assert_eq!(
        class_counts(&data.train.targets[0]),
        [143, 146, 142, 146, 144, 145, 144, 143, 141, 143]
    );
    assert_eq!(
        class_counts(&test.targets[0]),
        [35, 36, 35, 37, 37, 37, 37, 36, 33, 37]
    );
    let x = data.train.inputs[0].to_f32();
    assert_eq!(x.shape(), &[1437, 8, 8]);
    // scale(1/255): byte 255 -> exactly 1.0, byte 16 -> the f32 nearest 16/255.
    assert!(x.iter().any(|&v| v == 1.0));
    assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(x.iter().any(|&v| v == (16.0f64 / 255.0) as f32));
    assert_eq!(data.train.targets[0].shape(), &[1437]);
}

#[test]
fn trailing_one_dims_are_accepted_and_integers_convert_unchanged() {
    let data = load_data(
        &digits_spec(vec![]),
        &classifier(&[8, 8, 1]),
        LoadOptions::default(),
    )
    .unwrap();
    let x = data.train.inputs[0].to_f32();
    assert_eq!(x.shape(), &[1437, 8, 8, 1]);
    // No scale: the bytes themselves, as f32.
    assert!(x
        .iter()
        .all(|&v| v.fract() == 0.0 && (0.0..=255.0).contains(&v)));
    assert!(x.iter().any(|&v| v == 255.0));
}

#[test]
fn wrong_sample_shape_names_file_expected_and_found() {
    let e = load_data(
        &digits_spec(vec![]),
        &classifier(&[28, 28, 1]),
        LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "E0404");
    let msg = e.to_string();
    assert!(msg.contains("digits-images-idx3-ubyte"), "{msg}");
    assert!(
        msg.contains("[N, 28, 28, 1]") && msg.contains("[1797, 8, 8]"),
        "{msg}"
    );
}

#[test]
fn label_out_of_range_is_e0407() {
    let model = ModelData {
        inputs: vec![TensorSpec::new("image", DType::F32, &[8, 8])],
        targets: vec![TensorSpec::new("probs", DType::I32, &[]).with_classes(5)],
    };
    let e = load_data(&digits_spec(vec![]), &model, LoadOptions::default()).unwrap_err();
    assert_eq!(e.code(), "E0407");
    let msg = e.to_string();
    // The 6th label of the file is 5.
    assert!(
        msg.contains("digits-labels-idx1-ubyte")
            && msg.contains("label 5 at sample 5")
            && msg.contains("5 classes"),
        "{msg}"
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn sample_count_mismatch_is_e0406() {
    let dir = tempfile::tempdir().unwrap();
    let x = write(
        dir.path(),
        "x.npy",
        &encode_npy(&[4, 2], &RawData::F32(vec![0.0; 8])),
    );
    let y = write(
        dir.path(),
        "y.npy",
        &encode_npy(&[3], &RawData::I64(vec![0, 1, 0])),
    );
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Npy { x, y },
        test: None,
        x: vec![],
        y: vec![],
    };
    let model = ModelData {
        inputs: vec![TensorSpec::new("x", DType::F32, &[2])],
        targets: vec![TensorSpec::new("y", DType::I32, &[]).with_classes(2)],
    };
    let e = load_data(&spec, &model, LoadOptions::default()).unwrap_err();
    assert_eq!(e.code(), "E0406");
    let msg = e.to_string();
    assert!(
        msg.contains("y.npy")
            && msg.contains("3 samples")
            && msg.contains("x.npy")
            && msg.contains("has 4"),
        "{msg}"
    );
}

#[test]
fn nan_in_inputs_is_e0408_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let x = write(
        dir.path(),
        "x.npy",
        &encode_npy(
            &[3, 2],
            &RawData::F64(vec![0.0, 1.0, 2.0, f64::NAN, 4.0, 5.0]),
        ),
    );
    let y = write(
        dir.path(),
        "y.npy",
        &encode_npy(&[3], &RawData::F32(vec![0.5, 1.5, 2.5])),
    );
    let model = ModelData {
        inputs: vec![TensorSpec::new("x", DType::F32, &[2])],
        targets: vec![TensorSpec::new("y", DType::F32, &[1])],
    };
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Npy { x, y },
        test: None,
        x: vec![],
        y: vec![],
    };
    let e = load_data(&spec, &model, LoadOptions::default()).unwrap_err();
    assert_eq!(e.code(), "E0408");
    assert!(
        e.to_string().contains("x.npy") && e.to_string().contains("sample 1, element 1"),
        "{e}"
    );
    let data = load_data(&spec, &model, LoadOptions { allow_nan: true }).unwrap();
    assert!(data.train.inputs[0].to_f32()[[1, 1]].is_nan());
    // Regression targets [N] feed a [1] target.
    assert_eq!(data.train.targets[0].shape(), &[3, 1]);
}

#[test]
fn fractional_class_labels_are_e0405() {
    let dir = tempfile::tempdir().unwrap();
    let x = write(
        dir.path(),
        "x.npy",
        &encode_npy(&[2, 1], &RawData::F32(vec![0.0, 1.0])),
    );
    let y = write(
        dir.path(),
        "y.npy",
        &encode_npy(&[2], &RawData::F32(vec![1.0, 0.5])),
    );
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Npy { x, y },
        test: None,
        x: vec![],
        y: vec![],
    };
    let model = ModelData {
        inputs: vec![TensorSpec::new("x", DType::F32, &[1])],
        targets: vec![TensorSpec::new("y", DType::I32, &[]).with_classes(2)],
    };
    let e = load_data(&spec, &model, LoadOptions::default()).unwrap_err();
    assert_eq!(e.code(), "E0405");
    assert!(
        e.to_string().contains("y.npy") && e.to_string().contains("0.5"),
        "{e}"
    );
}

#[test]
fn standardize_uses_training_statistics_and_round_trips_as_json() {
    let dir = tempfile::tempdir().unwrap();
    // Two features; the last 2 of 5 rows are the test split (split(0.4): floor(5 * 0.6) = 3).
    let csv = "a,b,label\n1,10,0\n2,10,1\n3,10,0\n100,20,1\n200,30,0\n";
    let path = write(dir.path(), "t.csv", csv.as_bytes());
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Csv {
            path,
            label: "label".into(),
        },
        test: Some(TestSource::Split(0.4)),
        x: vec![Transform::Standardize],
        y: vec![Transform::OneHot(2)],
    };
    let model = ModelData {
        inputs: vec![TensorSpec::new("x", DType::F32, &[2])],
        targets: vec![TensorSpec::new("y", DType::F32, &[2])],
    };
    let data = load_data(&spec, &model, LoadOptions::default()).unwrap();
    assert_eq!(
        (data.train.len(), data.test.as_ref().unwrap().len()),
        (3, 2)
    );
    let stats = &data.transforms.x_stats[0][0];
    assert_eq!(stats.mean, vec![2.0, 10.0]);
    assert!((stats.variance[0] - 2.0 / 3.0).abs() < 1e-12 && stats.variance[1] == 0.0);
    let x = data.train.inputs[0].to_f32();
    let s = (2.0f64 / 3.0).sqrt();
    assert_eq!(
        x.iter().copied().collect::<Vec<_>>(),
        vec![(-1.0 / s) as f32, 0.0, 0.0, 0.0, (1.0 / s) as f32, 0.0]
    );
    // The test split uses the training statistics; a constant feature divides by epsilon 1e-7.
    let tx = data.test.as_ref().unwrap().inputs[0].to_f32();
    assert_eq!(tx[[0, 0]], (98.0 / s) as f32);
    assert_eq!(tx[[0, 1]], (10.0 / 1e-7) as f32);
    // one_hot(2) targets.
    let y = data.train.targets[0].as_f32().unwrap();
    assert_eq!(
        y.iter().copied().collect::<Vec<_>>(),
        vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    );
    // Stored in weights metadata as JSON and restored exactly for eval/predict.
    let json = data.transforms.to_json();
    let back = fm_runtime::data::FittedTransforms::from_json(&json).unwrap();
    assert_eq!(back, data.transforms);
    let csv_path = dir.path().join("t.csv").display().to_string();
    let raw = read_xy(
        &csv_path,
        Some(&format!("{csv_path}:label")),
        &model.input_names(),
        &model.target_names(),
    )
    .unwrap();
    let again = prepare(&raw, &model, &back, LoadOptions::default()).unwrap();
    assert_eq!(again.slice(0..3), data.train);
}

#[test]
fn one_hot_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.csv", b"a,label\n1,0\n2,3\n");
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Csv {
            path,
            label: "label".into(),
        },
        test: None,
        x: vec![],
        y: vec![Transform::OneHot(3)],
    };
    let model = ModelData {
        inputs: vec![TensorSpec::new("x", DType::F32, &[1])],
        targets: vec![TensorSpec::new("y", DType::F32, &[3])],
    };
    let e = load_data(&spec, &model, LoadOptions::default()).unwrap_err();
    assert_eq!(e.code(), "E0407");
    assert!(
        e.to_string().contains("t.csv:label") && e.to_string().contains("label 3 at sample 1"),
        "{e}"
    );
}

#[test]
fn npz_source_with_one_key_per_input() {
    let dir = tempfile::tempdir().unwrap();
    let img = RawData::U8(vec![1, 2, 3, 4, 5, 6].into());
    let meta = RawData::F32(vec![0.5, 1.5, 2.5]);
    let lab = RawData::I32(vec![2, 0, 1]);
    let bytes = encode_npz(
        &[
            ("img", &[3, 2], &img),
            ("m", &[3, 1], &meta),
            ("lab", &[3], &lab),
        ],
        true,
    )
    .unwrap();
    let path = write(dir.path(), "d.npz", &bytes);
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Npz {
            path,
            // Written in another order than the model's inputs.
            x: NpzKeys::Named(vec![
                ("meta".into(), "m".into()),
                ("image".into(), "img".into()),
            ]),
            y: NpzKeys::One("lab".into()),
        },
        test: None,
        x: vec![],
        y: vec![],
    };
    let model = ModelData {
        inputs: vec![
            TensorSpec::new("image", DType::F32, &[2]),
            TensorSpec::new("meta", DType::F32, &[1]),
        ],
        targets: vec![TensorSpec::new("y", DType::I32, &[]).with_classes(3)],
    };
    let data = load_data(&spec, &model, LoadOptions::default()).unwrap();
    assert_eq!(
        data.train.inputs[0]
            .to_f32()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    assert_eq!(data.train.inputs[1].shape(), &[3, 1]);
    assert_eq!(
        data.train.targets[0]
            .as_i32()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![2, 0, 1]
    );
    let gathered = data.train.gather(&[2, 0]);
    assert_eq!(
        gathered.targets[0]
            .as_i32()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        gathered.inputs[0]
            .to_f32()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![5.0, 6.0, 1.0, 2.0]
    );
}

#[test]
fn idx_labels_as_i32_idx() {
    let dir = tempfile::tempdir().unwrap();
    let images = write(
        dir.path(),
        "i",
        &encode_idx(&[2, 2], &RawData::F64(vec![0.25, 0.5, 0.75, 1.0])),
    );
    let labels = write(
        dir.path(),
        "l",
        &encode_idx(&[2], &RawData::I16(vec![1, 0])),
    );
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Idx { images, labels },
        test: None,
        x: vec![],
        y: vec![],
    };
    let model = ModelData {
        inputs: vec![TensorSpec::new("x", DType::F32, &[2])],
        targets: vec![TensorSpec::new("y", DType::I32, &[1]).with_classes(2)],
    };
    let data = load_data(&spec, &model, LoadOptions::default()).unwrap();
    assert_eq!(data.train.targets[0].shape(), &[2, 1]);
}

#[test]
fn split_that_leaves_nothing_is_an_error() {
    let mut spec = digits_spec(vec![]);
    spec.test = Some(TestSource::Split(1.0));
    let e = load_data(&spec, &classifier(&[8, 8]), LoadOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DataSetup);
}

#[test]
fn epoch_permutations_are_seeded_and_differ_per_epoch() {
    let a = epoch_permutation(1437, 42, 0);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..1437).collect::<Vec<_>>());
    assert_eq!(a, epoch_permutation(1437, 42, 0));
    assert_ne!(a, epoch_permutation(1437, 42, 1));
    assert_ne!(a, epoch_permutation(1437, 43, 0));
    assert_eq!(epoch_order(5, false, 42, 3), vec![0, 1, 2, 3, 4]);
    // Pinned values: changing the generator changes every seeded run, so it must be deliberate.
    assert_eq!(epoch_permutation(10, 0, 0), PINNED_PERMUTATION);
    let mut rng = SplitMix64::new(0);
    // SplitMix64's reference output for seed 0.
    assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(batch_count(1437, 32), 45);
    assert_eq!(batch_count(1149, 32), 36);
}

const PINNED_PERMUTATION: [usize; 10] = [4, 9, 0, 5, 7, 2, 8, 1, 6, 3];

#[test]
fn predict_inputs_from_one_npz_with_a_key_per_input() {
    use fm_runtime::data::prepare_inputs;
    use fm_runtime::data::read::read_inputs;
    let dir = tempfile::tempdir().unwrap();
    let img = RawData::U8(vec![0, 255, 51, 102].into());
    let meta = RawData::F64(vec![1.0, 2.0]);
    let bytes = encode_npz(&[("image", &[2, 2], &img), ("meta", &[2, 1], &meta)], false).unwrap();
    let path = write(dir.path(), "in.npz", &bytes);
    let names = vec!["image".to_string(), "meta".to_string()];
    let raw = read_inputs(&[path.display().to_string()], &names).unwrap();
    let model = ModelData {
        inputs: vec![
            TensorSpec::new("image", DType::F32, &[2, 1]),
            TensorSpec::new("meta", DType::F32, &[1]),
        ],
        targets: vec![],
    };
    let transforms = fm_runtime::data::FittedTransforms {
        x: vec![Transform::Scale {
            factor: 1.0 / 255.0,
            offset: 0.0,
        }],
        ..Default::default()
    };
    let inputs = prepare_inputs(&raw, &model, &transforms, LoadOptions::default()).unwrap();
    assert_eq!(inputs[0].shape(), &[2, 2, 1]);
    assert_eq!(
        inputs[0].to_f32().iter().copied().collect::<Vec<_>>(),
        vec![0.0, 1.0, 0.2, 0.4]
    );
    assert_eq!(
        inputs[1].to_f32().iter().copied().collect::<Vec<_>>(),
        vec![1.0 / 255.0, 2.0 / 255.0]
    );
    // One array for a two-input model is an error naming the inputs.
    let e = prepare_inputs(&raw[..1], &model, &transforms, LoadOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DataSetup);
    assert!(e.to_string().contains("image, meta"), "{e}");
}

#[test]
fn npy_with_the_wrong_sample_shape_is_e0404() {
    let dir = tempfile::tempdir().unwrap();
    let x = write(
        dir.path(),
        "x.npy",
        &encode_npy(&[4, 3], &RawData::F32(vec![0.0; 12])),
    );
    let y = write(
        dir.path(),
        "y.npy",
        &encode_npy(&[4], &RawData::I32(vec![0, 1, 0, 1])),
    );
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Npy { x, y },
        test: None,
        x: vec![],
        y: vec![],
    };
    let model = ModelData {
        inputs: vec![TensorSpec::new("features", DType::F32, &[2])],
        targets: vec![TensorSpec::new("y", DType::I32, &[]).with_classes(2)],
    };
    let e = load_data(&spec, &model, LoadOptions::default()).unwrap_err();
    assert_eq!(e.code(), "E0404");
    let msg = e.to_string();
    assert!(
        msg.contains("x.npy") && msg.contains("input 'features' expects data of shape [N, 2]"),
        "{msg}"
    );
    assert!(msg.contains("found shape [4, 3]"), "{msg}");
    // Targets of the wrong shape: one-hot rows fed to a sparse target.
    let x = write(
        dir.path(),
        "x2.npy",
        &encode_npy(&[2, 2], &RawData::F32(vec![0.0; 4])),
    );
    let y = write(
        dir.path(),
        "y2.npy",
        &encode_npy(&[2, 3], &RawData::F32(vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0])),
    );
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Npy { x, y },
        test: None,
        x: vec![],
        y: vec![],
    };
    let e = load_data(&spec, &model, LoadOptions::default()).unwrap_err();
    assert_eq!(e.code(), "E0404");
    assert!(
        e.to_string().contains("y2.npy") && e.to_string().contains("[2, 3]"),
        "{e}"
    );
}

/// u8 inputs of files of 1 MiB or more are memory-mapped (IDX, `.npy`, an `.npz` member stored
/// uncompressed) or read (a deflated `.npz` member, gzip), and stay bytes until batches are
/// gathered; every way gives the bits of the dense conversion (`(b as f32 as f64 * factor +
/// offset) as f32`), in `gather`, `slice`, `batch` and the test split.
#[test]
fn large_u8_inputs_stay_bytes_and_convert_as_dense_data() {
    use fm_runtime::data::Column;
    let dir = tempfile::tempdir().unwrap();
    let n = 1400; // 1400 * 28 * 28 bytes: 1.1 MB
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i * 7 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let img = RawData::U8(pixels.clone().into());
    let lab = RawData::U8(labels.into());
    let y = write(dir.path(), "y.idx", &encode_idx(&[n], &lab));
    let scale = Transform::Scale {
        factor: 2.0 / 255.0,
        offset: -1.0,
    };
    let expected = |i: usize| (pixels[i] as f32 as f64 * (2.0 / 255.0) - 1.0) as f32;
    let sources = [
        ("idx", true, encode_idx(&[n, 28, 28], &img)),
        ("npy", true, encode_npy(&[n, 28, 28], &img)),
        (
            "stored.npz",
            true,
            encode_npz(&[("x", &[n, 28, 28], &img), ("y", &[n], &lab)], false).unwrap(),
        ),
        (
            "deflated.npz",
            false,
            encode_npz(&[("x", &[n, 28, 28], &img), ("y", &[n], &lab)], true).unwrap(),
        ),
    ];
    for (name, mapped, bytes) in sources {
        let path = write(dir.path(), name, &bytes);
        let train = match name {
            "idx" => Source::Idx {
                images: path.clone(),
                labels: y.clone(),
            },
            "npy" => Source::Npy {
                x: path.clone(),
                y: y.clone(),
            },
            _ => Source::Npz {
                path: path.clone(),
                x: NpzKeys::One("x".into()),
                y: NpzKeys::One("y".into()),
            },
        };
        let spec = DataSpec {
            name: "d".into(),
            train,
            test: Some(TestSource::Split(0.25)),
            x: vec![scale.clone()],
            y: vec![],
        };
        let data = load_data(&spec, &classifier(&[28, 28, 1]), LoadOptions::default()).unwrap();
        let Column::Bytes(column) = &data.train.inputs[0] else {
            panic!("{name}: not kept as bytes")
        };
        assert_eq!(column.shape(), &[1050, 28, 28, 1], "{name}");
        assert_eq!(column.is_mapped(), mapped, "{name}");
        let dense = data.train.inputs[0].to_f32();
        let flat = dense.as_slice().unwrap();
        assert!(
            flat.iter().enumerate().all(|(i, &v)| v == expected(i)),
            "{name}"
        );
        let batch = data.train.gather(&[1049, 3]);
        let b = batch.inputs[0]
            .as_f32()
            .unwrap()
            .as_slice()
            .unwrap()
            .to_vec();
        assert_eq!(b[..784], flat[1049 * 784..1050 * 784], "{name}");
        assert_eq!(b[784..], flat[3 * 784..4 * 784], "{name}");
        assert_eq!(batch.targets[0].as_i32().unwrap()[[0]], 1049 % 10);
        let test = data.test.unwrap();
        let first = test.batch(0..1).inputs[0].to_f32();
        assert_eq!(
            first.as_slice().unwrap()[5],
            expected(1050 * 784 + 5),
            "{name}"
        );
    }
}

/// The finite check of byte inputs looks at the 256 converted values: a `scale` that overflows
/// f32 for bright pixels is E0408 at the first such pixel, as for dense data.
#[test]
fn byte_inputs_that_scale_to_infinity_are_e0408() {
    let dir = tempfile::tempdir().unwrap();
    let img = RawData::U8(vec![0, 1, 2, 3, 200, 5].into());
    let lab = RawData::U8(vec![0, 1, 2].into());
    let spec = DataSpec {
        name: "d".into(),
        train: Source::Idx {
            images: write(dir.path(), "x.idx", &encode_idx(&[3, 2], &img)),
            labels: write(dir.path(), "y.idx", &encode_idx(&[3], &lab)),
        },
        test: None,
        x: vec![Transform::Scale {
            factor: 1e37,
            offset: 0.0,
        }],
        y: vec![],
    };
    let e = load_data(&spec, &classifier(&[2]), LoadOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NonFinite);
    assert!(
        e.message.contains("is infinity at sample 2, element 0"),
        "{}",
        e.message
    );
    let allowed = LoadOptions { allow_nan: true };
    assert!(load_data(&spec, &classifier(&[2]), allowed).is_ok());
}
