//! Every reader on real files (the digits IDX) and on fixtures generated here, and every bad
//! input giving its error code and naming its file.

use flate2::write::GzEncoder;
use fm_runtime::data::idx::encode_idx;
use fm_runtime::data::npy::{encode_npy, encode_npz, write_npy};
use fm_runtime::data::read::{detect_format, read_file_bytes, Format};
use fm_runtime::data::{read_array, read_xy, RawData};
use fm_runtime::tensor::Tensor;
use fm_runtime::ErrorKind;
use std::io::Write;
use std::path::{Path, PathBuf};

fn digits(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data")
        .join(name)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn err_kind(spec: &str) -> (ErrorKind, String) {
    let e = read_array(spec).expect_err("expected an error");
    (e.kind, e.to_string())
}

#[test]
fn digits_idx_images_and_labels() {
    let images = read_array(digits("digits-images-idx3-ubyte").to_str().unwrap()).unwrap();
    assert_eq!(images.shape, vec![1797, 8, 8]);
    let RawData::U8(pixels) = &images.data else {
        panic!("expected u8, got {}", images.data.dtype_name())
    };
    // Every byte is 16 * v clamped to 255 (README): multiples of 16 or 255.
    assert!(pixels.iter().all(|&b| b % 16 == 0 || b == 255));
    assert!(pixels.contains(&255));
    let bytes = std::fs::read(digits("digits-images-idx3-ubyte")).unwrap();
    assert_eq!(
        fm_runtime::weights::sha256_hex(&bytes),
        "de28b89f0f92bce5e9b37ca3c621f9006c89df38a0425857f065de583f0c0023"
    );
    let labels = read_array(digits("digits-labels-idx1-ubyte").to_str().unwrap()).unwrap();
    assert_eq!(labels.shape, vec![1797]);
    let RawData::U8(l) = &labels.data else {
        panic!()
    };
    assert_eq!(&l[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let mut counts = [0usize; 10];
    l.iter().for_each(|&x| counts[x as usize] += 1);
    // README: train + test class counts.
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
}

#[test]
fn idx_every_dtype_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let cases = vec![
        RawData::U8(vec![0, 1, 255, 7, 8, 9].into()),
        RawData::I8(vec![-128, -1, 0, 1, 127, 5]),
        RawData::I16(vec![-32768, -2, 0, 3, 32767, 300]),
        RawData::I32(vec![i32::MIN, -5, 0, 70000, i32::MAX, 1]),
        RawData::F32(vec![-1.5, 0.0, 2.25, f32::MAX, 1e-30, 3.0]),
        RawData::F64(vec![-1.5, 0.1, 2.25, 1e300, -1e-300, 3.0]),
    ];
    for (i, data) in cases.into_iter().enumerate() {
        let bytes = encode_idx(&[2, 3], &data);
        let plain = write(dir.path(), &format!("a{i}.idx"), &bytes);
        // The gzip file has a misleading name: detection is by content.
        let gz = write(dir.path(), &format!("a{i}.bin"), &gzip(&bytes));
        for spec in [plain, gz] {
            let arr = read_array(&spec).unwrap();
            assert_eq!(arr.shape, vec![2, 3], "{spec}");
            assert_eq!(arr.data, data, "{spec}");
        }
    }
}

#[test]
fn digits_gzip_equals_plain() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(digits("digits-images-idx3-ubyte")).unwrap();
    let gz = write(dir.path(), "digits-images-idx3-ubyte.gz", &gzip(&bytes));
    let a = read_array(&gz).unwrap();
    let b = read_array(digits("digits-images-idx3-ubyte").to_str().unwrap()).unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!(a.shape, b.shape);
}

#[test]
fn npy_every_dtype_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let cases = vec![
        RawData::F32(vec![1.0, -2.5, 3.25, 0.0]),
        RawData::F64(vec![1.0, -2.5, 0.1, 1e-310]),
        RawData::U8(vec![0, 9, 200, 255].into()),
        RawData::I32(vec![-7, 0, 7, 1 << 30]),
        RawData::I64(vec![-7, 0, 7, 1 << 40]),
    ];
    for (i, data) in cases.into_iter().enumerate() {
        let bytes = encode_npy(&[2, 2], &data);
        // NumPy pads the version 1.0 header so the data starts at a multiple of 64.
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let path = write(dir.path(), &format!("a{i}.npy"), &bytes);
        let arr = read_array(&path).unwrap();
        assert_eq!(arr.shape, vec![2, 2]);
        assert_eq!(arr.data, data);
    }
}

#[test]
fn npy_written_by_numpy_layout_is_read() {
    // Exactly what `np.save(f, np.arange(6, dtype=np.float32).reshape(2, 3))` writes (NumPy 1.x/2.x).
    let mut bytes = b"\x93NUMPY\x01\x00v\x00".to_vec();
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    assert_eq!(header.len(), 0x76);
    bytes.extend_from_slice(header.as_bytes());
    for v in 0..6 {
        bytes.extend_from_slice(&(v as f32).to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.npy", &bytes);
    let arr = read_array(&path).unwrap();
    assert_eq!(arr.shape, vec![2, 3]);
    assert_eq!(arr.data, RawData::F32(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
}

#[test]
fn write_npy_f32_and_i32() {
    let dir = tempfile::tempdir().unwrap();
    let f = ndarray::ArrayD::from_shape_vec(vec![2, 2], vec![0.5f32, 1.5, -2.0, 3.0]).unwrap();
    let path = dir.path().join("pred.npy");
    write_npy(&path, &Tensor::F32(f)).unwrap();
    let arr = read_array(path.to_str().unwrap()).unwrap();
    assert_eq!(arr.data, RawData::F32(vec![0.5, 1.5, -2.0, 3.0]));
    let i = ndarray::ArrayD::from_shape_vec(vec![3], vec![3i32, 1, 4]).unwrap();
    write_npy(&path, &Tensor::I32(i)).unwrap();
    let arr = read_array(path.to_str().unwrap()).unwrap();
    assert_eq!(
        (arr.shape.clone(), arr.data),
        (vec![3], RawData::I32(vec![3, 1, 4]))
    );
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn npz_stored_and_compressed_with_keys() {
    let dir = tempfile::tempdir().unwrap();
    let x = RawData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let y = RawData::I64(vec![0, 1, 1]);
    for compress in [false, true] {
        let bytes = encode_npz(&[("x", &[3, 2], &x), ("y", &[3], &y)], compress).unwrap();
        let path = write(dir.path(), &format!("d{compress}.npz"), &bytes);
        let ax = read_array(&format!("{path}:x")).unwrap();
        assert_eq!((ax.shape.clone(), ax.data.clone()), (vec![3, 2], x.clone()));
        assert_eq!(ax.origin, format!("{path}:x"));
        let ay = read_array(&format!("{path}:y")).unwrap();
        assert_eq!(ay.data, y);
        // Without a key, an .npz with two arrays is ambiguous.
        let (kind, msg) = err_kind(&path);
        assert_eq!(kind, ErrorKind::BadFormat);
        assert!(msg.contains("x, y"), "{msg}");
        // A key that is not there names the keys that are.
        let (kind, msg) = err_kind(&format!("{path}:z"));
        assert_eq!(kind, ErrorKind::BadFormat);
        assert!(
            msg.contains("no array 'z'") && msg.contains("x, y"),
            "{msg}"
        );
    }
}

#[test]
fn csv_target_column_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "houses.csv",
        b"rooms,area,price\n3,120.5,300\n2,80,210.5\n4, 150 ,400\n",
    );
    let samples = read_xy(
        &path,
        Some(&format!("{path}:price")),
        &["x".into()],
        &["y".into()],
    )
    .unwrap();
    let x = &samples.inputs[0];
    assert_eq!(x.shape, vec![3, 2]);
    assert_eq!(
        x.data,
        RawData::F64(vec![3.0, 120.5, 2.0, 80.0, 4.0, 150.0])
    );
    let y = samples.targets.unwrap();
    assert_eq!(y.shape, vec![3]);
    assert_eq!(y.data, RawData::F64(vec![300.0, 210.5, 400.0]));
    // A middle column as the target.
    let samples = read_xy(
        &path,
        Some(&format!("{path}:area")),
        &["x".into()],
        &["y".into()],
    )
    .unwrap();
    assert_eq!(
        samples.inputs[0].data,
        RawData::F64(vec![3.0, 300.0, 2.0, 210.5, 4.0, 400.0])
    );
    // Detected as CSV from its content even without the extension.
    let other = write(dir.path(), "table.txt", b"a,b\n1,2\n");
    let bytes = read_file_bytes(Path::new(&other)).unwrap();
    assert_eq!(
        detect_format(Path::new(&other), &bytes).unwrap(),
        Format::Csv
    );
}

#[test]
fn csv_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.csv", b"a,b\n1,2\n3,oops\n");
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind, ErrorKind::DType);
    assert!(
        msg.contains("line 3") && msg.contains("'b'") && msg.contains("oops"),
        "{msg}"
    );
    let path = write(dir.path(), "ragged.csv", b"a,b\n1,2\n3\n");
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind, ErrorKind::BadFormat);
    assert!(
        msg.contains("ragged.csv") && msg.contains("line 3"),
        "{msg}"
    );
    let ok = write(dir.path(), "ok.csv", b"a,b\n1,2\n");
    let (kind, msg) = err_kind(&format!("{ok}:label"));
    assert_eq!(kind, ErrorKind::BadFormat);
    assert!(
        msg.contains("no column 'label'") && msg.contains("a, b"),
        "{msg}"
    );
}

#[test]
fn missing_file_is_e0401() {
    let (kind, msg) = err_kind("/nonexistent/dir/train-images.idx");
    assert_eq!(kind, ErrorKind::MissingFile);
    assert_eq!(kind.code(), "E0401");
    assert!(
        msg.starts_with("/nonexistent/dir/train-images.idx:"),
        "{msg}"
    );
}

#[test]
fn truncated_idx_is_e0403() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(digits("digits-images-idx3-ubyte")).unwrap();
    let path = write(dir.path(), "cut.idx", &bytes[..bytes.len() - 100]);
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind.code(), "E0403");
    assert!(
        msg.contains("cut.idx") && msg.contains("[1797, 8, 8]") && msg.contains("115008"),
        "{msg}"
    );
    // Truncated inside the header.
    let path = write(dir.path(), "cut-header.idx", &bytes[..10]);
    assert_eq!(err_kind(&path).0, ErrorKind::Truncated);
    // Truncated gzip stream.
    let gz = gzip(&bytes);
    let path = write(dir.path(), "cut.gz", &gz[..gz.len() / 2]);
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind, ErrorKind::Truncated, "{msg}");
}

#[test]
fn wrong_magic_is_e0402() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(digits("digits-labels-idx1-ubyte")).unwrap();
    bytes[2] = 0x07; // not an IDX type
    let path = write(dir.path(), "labels.idx", &bytes);
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind.code(), "E0402");
    assert!(msg.contains("labels.idx") && msg.contains("0x07"), "{msg}");
    // Binary garbage in no known format.
    let path = write(
        dir.path(),
        "garbage.bin",
        &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3],
    );
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind, ErrorKind::BadFormat);
    assert!(msg.contains("de ad be ef"), "{msg}");
    // An empty file.
    let path = write(dir.path(), "empty", &[]);
    assert_eq!(err_kind(&path).0, ErrorKind::BadFormat);
}

#[test]
fn gzip_garbage_is_e0402() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bytes.extend_from_slice(&[0xff; 64]);
    let path = write(dir.path(), "x.gz", &bytes);
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind, ErrorKind::BadFormat, "{msg}");
    assert!(msg.contains("x.gz") && msg.contains("gzip"), "{msg}");
}

#[test]
fn npy_bad_dtype_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = encode_npy(&[2], &RawData::F32(vec![1.0, 2.0]));
    let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
    bytes[at..at + 3].copy_from_slice(b">f4");
    let path = write(dir.path(), "big.npy", &bytes);
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind.code(), "E0405");
    assert!(msg.contains("big.npy") && msg.contains("'>f4'"), "{msg}");
    let mut bytes = encode_npy(&[2], &RawData::F32(vec![1.0, 2.0]));
    let at = bytes.windows(5).position(|w| w == b"False").unwrap();
    bytes[at..at + 5].copy_from_slice(b"True ");
    let path = write(dir.path(), "fortran.npy", &bytes);
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind, ErrorKind::BadFormat);
    assert!(msg.contains("Fortran"), "{msg}");
    let bytes = encode_npy(&[4], &RawData::F64(vec![1.0, 2.0, 3.0, 4.0]));
    let path = write(dir.path(), "short.npy", &bytes[..bytes.len() - 3]);
    let (kind, msg) = err_kind(&path);
    assert_eq!(kind, ErrorKind::Truncated);
    assert!(msg.contains("[4]") && msg.contains("32 bytes"), "{msg}");
}

#[test]
fn npz_that_is_not_a_zip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "broken.npz",
        b"PK\x03\x04this is not a zip archive at all",
    );
    let (kind, msg) = err_kind(&format!("{path}:x"));
    // The selector only splits off when the path exists; the file exists, so the zip fails.
    assert_eq!(kind, ErrorKind::BadFormat, "{msg}");
    assert!(msg.contains("broken.npz"), "{msg}");
}

#[test]
fn missing_npz_with_key_names_the_file() {
    let (kind, msg) = err_kind("/nonexistent/data.npz:x");
    assert_eq!(kind, ErrorKind::MissingFile);
    assert!(
        msg.starts_with("/nonexistent/data.npz: no such file"),
        "{msg}"
    );
}
