//! Error codes, run directory numbering.

use fm_runtime::train::record::next_run_dir;
use fm_runtime::ErrorKind;

#[test]
fn every_error_kind_has_its_own_code() {
    let kinds = [
        ErrorKind::MissingFile,
        ErrorKind::BadFormat,
        ErrorKind::Truncated,
        ErrorKind::Shape,
        ErrorKind::DType,
        ErrorKind::SampleCount,
        ErrorKind::LabelOutOfRange,
        ErrorKind::NonFinite,
        ErrorKind::DataSetup,
        ErrorKind::Weights,
        ErrorKind::Write,
        ErrorKind::Backend,
    ];
    let codes: Vec<&str> = kinds.iter().map(|k| k.code().as_str()).collect();
    assert_eq!(
        codes,
        vec![
            "E0401", "E0402", "E0403", "E0404", "E0405", "E0406", "E0407", "E0408", "E0409",
            "E0410", "E0411", "E0420"
        ]
    );
}

#[test]
fn run_directories_are_numbered_from_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = next_run_dir(dir.path(), "digits_mlp");
    assert_eq!(first, dir.path().join("digits_mlp/1"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(dir.path().join("digits_mlp/2")).unwrap();
    assert_eq!(
        next_run_dir(dir.path(), "digits_mlp"),
        dir.path().join("digits_mlp/3")
    );
}

#[test]
fn eval_output_line_and_json() {
    use fm_runtime::train::{format_logs, logs_json};
    let logs = vec![
        ("loss".to_string(), 0.123456789),
        ("accuracy".to_string(), 0.95),
        ("mae".to_string(), f64::NAN),
    ];
    assert_eq!(format_logs(&logs[..2]), "loss: 0.1235 - accuracy: 0.9500");
    assert_eq!(
        logs_json(&logs),
        r#"{"loss":0.123456789,"accuracy":0.95,"mae":null}"#
    );
}
