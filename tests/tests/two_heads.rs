//! examples/digits_two_heads.fm: a classification head and a regression head trained from one
//! shipped `.npz`, each with its own loss and metrics (language.md 9.3), on both backends.

use fm_runtime::data::read_array;
use fm_tests::{fmc, root};

#[test]
fn two_heads_learn_the_digit_and_the_centre_of_its_ink() {
    let file = root()
        .join("examples/digits_two_heads.fm")
        .display()
        .to_string();
    let dir = std::env::temp_dir().join(format!("fm-two-heads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for backend in ["jit", "interp"] {
        let run = dir.join(backend);
        let r = fmc(&[
            "train",
            &file,
            "--backend",
            backend,
            "--run-dir",
            &run.display().to_string(),
        ]);
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        // Each head reports its own metric: the softmax head a (sparse) accuracy and an F1,
        // the regression head a mean absolute error.
        let test: Vec<(&str, f64)> = r
            .stdout
            .trim()
            .split(" - ")
            .map(|kv| {
                let (k, v) = kv.split_once(": ").unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let names: Vec<&str> = test.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "test_loss",
                "test_digit_accuracy",
                "test_digit_f1",
                "test_center_mae"
            ],
            "{backend}"
        );
        // The 360 held-out digits: the digits README's one-head MLP anchor is 0.90; predicting
        // the training mean of the centres gives a MAE of 0.287 pixels.
        assert!(test[1].1 > 0.86, "{backend}: digit accuracy {}", test[1].1);
        assert!(test[2].1 > 0.85, "{backend}: digit f1 {}", test[2].1);
        assert!(test[3].1 < 0.12, "{backend}: centre MAE {}", test[3].1);
        let log = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        let header = log.lines().next().unwrap();
        assert!(header.contains("val_center_mae"), "{header}");
    }
    // `predict` writes one array per head.
    let out = dir.join("pred.npy");
    let r = fmc(&[
        "predict",
        &file,
        "--weights",
        &dir.join("jit/weights.safetensors").display().to_string(),
        "--input",
        &root()
            .join("examples/data/digits_heads/digits_heads.npz:image")
            .display()
            .to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let digit = read_array(&dir.join("pred.digit.npy").display().to_string()).unwrap();
    let center = read_array(&dir.join("pred.center.npy").display().to_string()).unwrap();
    assert_eq!(
        (digit.shape.clone(), center.shape.clone()),
        (vec![1797, 10], vec![1797, 2])
    );
    let c = center.data.to_f32();
    assert!(
        c.iter().all(|v| (1.0..6.0).contains(v)),
        "centres in pixels"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
