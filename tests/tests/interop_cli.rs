//! `fmc export` and `fmc import` on the command line: a trained model goes out to ONNX and back
//! in, and bad input is a coded diagnostic naming the file and the part, exit 1, nothing written.

use fm_tests::{fmc, root};
use std::path::Path;

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-interop-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_export_import_predict_gives_the_same_predictions() {
    let mlp = root().join("examples/digits_mlp.fm");
    let run = tmp("run");
    let t = fmc(&["train", s(&mlp), "--steps", "3", "--run-dir", s(&run), "-q"]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let w = run.join("weights.safetensors");
    let onnx = tmp("mlp.onnx");
    let e = fmc(&["export", s(&mlp), "--weights", s(&w), "-o", s(&onnx)]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert!(e.stderr.contains("opset 17"), "{}", e.stderr);
    let fm = tmp("mlp_imported.fm");
    let i = fmc(&["import", s(&onnx), "-o", s(&fm)]);
    assert_eq!(i.code, 0, "{}", i.stderr);
    let source = std::fs::read_to_string(&fm).unwrap();
    // The data section's `scale(1 / 255)` travels as the graph's first operator.
    assert!(source.contains("Rescale(0.003921569"), "{source}");
    let data = root().join("examples/data/digits-images-idx3-ubyte");
    let (ya, yb) = (tmp("a.npy"), tmp("b.npy"));
    let a = fmc(&[
        "predict",
        s(&mlp),
        "--weights",
        s(&w),
        "--input",
        s(&data),
        "-o",
        s(&ya),
    ]);
    let b = fmc(&[
        "predict",
        s(&fm),
        "--weights",
        s(&fm.with_extension("safetensors")),
        "--input",
        s(&data),
        "-o",
        s(&yb),
    ]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let ya = fm_runtime::data::read_array(s(&ya)).unwrap().data.to_f32();
    let yb = fm_runtime::data::read_array(s(&yb)).unwrap().data.to_f32();
    assert_eq!(ya.len(), 1797 * 10);
    assert_eq!(ya.len(), yb.len());
    // The imported Rescale multiplies in f32 where `scale(1 / 255)` rounds once from f64:
    // probabilities agree to 1e-5 relative to the largest.
    let diff = ya
        .iter()
        .zip(&yb)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 1e-5, "max difference {diff}");
}

#[test]
fn a_truncated_onnx_file_is_e0402_and_writes_nothing() {
    let mlp = root().join("examples/digits_mlp.fm");
    let run = tmp("run2");
    assert_eq!(
        fmc(&["train", s(&mlp), "--steps", "1", "--run-dir", s(&run), "-q"]).code,
        0
    );
    let onnx = tmp("full.onnx");
    let w = run.join("weights.safetensors");
    assert_eq!(
        fmc(&["export", s(&mlp), "--weights", s(&w), "-o", s(&onnx)]).code,
        0
    );
    let bytes = std::fs::read(&onnx).unwrap();
    let cut = tmp("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = tmp("cut.fm");
    let r = fmc(&["import", s(&cut), "-o", s(&out)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error[E0402]: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("cut.onnx: is not an ONNX model"),
        "{}",
        r.stderr
    );
    assert!(!out.exists() && !out.with_extension("safetensors").exists());
}

#[test]
fn a_damaged_keras_file_is_reported_as_keras_and_an_out_of_range_setting_as_such() {
    // Not a zip, named `.keras`: was "is not an ONNX model".
    let garbage = tmp("garbage.keras");
    std::fs::write(&garbage, b"\x00\x01 not a zip at all").unwrap();
    let out = tmp("garbage.fm");
    let r = fmc(&["import", s(&garbage), "-o", s(&out)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with(&format!(
            "error[E0402]: {}: is neither a .keras file nor a Keras JSON config",
            s(&garbage)
        )),
        "{}",
        r.stderr
    );
    // A Keras config asking for 10^12 units: fm's checker refuses it, which is the file's
    // setting, not necessarily an importer bug (the message said "this is a bug in fmc import").
    let config =
        std::fs::read_to_string(root().join("compiler/interop/tests/keras/mnist_mlp.json"))
            .unwrap()
            .replacen("\"units\": 128", "\"units\": 1000000000000", 1);
    let json = tmp("huge_units.json");
    std::fs::write(&json, config).unwrap();
    let out = tmp("huge_units.fm");
    let r = fmc(&["import", s(&json), "-o", s(&out)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "huge_units.json: the imported model does not check (`units` is too large): \
             the file holds a setting fm refuses, or fmc import has a bug"
        ),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}

#[test]
fn weights_of_another_model_are_e0410_and_write_nothing() {
    let mlp = root().join("examples/digits_mlp.fm");
    let cnn = root().join("examples/digits_cnn.fm");
    let run = tmp("run3");
    assert_eq!(
        fmc(&["train", s(&mlp), "--steps", "1", "--run-dir", s(&run), "-q"]).code,
        0
    );
    let onnx = tmp("wrong.onnx");
    let w = run.join("weights.safetensors");
    let r = fmc(&["export", s(&cnn), "--weights", s(&w), "-o", s(&onnx)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error[E0410]: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("missing tensor 'conv2d.kernel'"),
        "{}",
        r.stderr
    );
    assert!(!onnx.exists());
}

#[test]
fn weights_of_a_deeper_model_whose_first_layers_fit_are_e0410() {
    // A 3-layer MLP's weights hold `dense` and `dense_1` of the 2-layer MLP's shapes: export
    // took them and left `dense_2` out (a wrong model, silently); eval refused them.
    let deep = tmp("deep.fm");
    let src = std::fs::read_to_string(root().join("examples/digits_mlp.fm"))
        .unwrap()
        .replace("Dense(10, softmax)", "Dense(10) -> Dense(10, softmax)")
        .replace(
            "\"data/",
            &format!("\"{}/", root().join("examples/data").display()),
        );
    std::fs::write(&deep, src).unwrap();
    let run = tmp("run_deep");
    assert_eq!(
        fmc(&[
            "train",
            s(&deep),
            "--steps",
            "1",
            "--run-dir",
            s(&run),
            "-q"
        ])
        .code,
        0
    );
    let mlp = root().join("examples/digits_mlp.fm");
    let w = run.join("weights.safetensors");
    let onnx = tmp("deep.onnx");
    let r = fmc(&["export", s(&mlp), "--weights", s(&w), "-o", s(&onnx)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "the weights do not fit model `digits_mlp`: unknown tensor 'dense_2.bias' (shape [10]): \
             the model has no such tensor; unknown tensor 'dense_2.kernel'"
        ),
        "{}",
        r.stderr
    );
    assert!(!onnx.exists());
}

/// A CNN made and exported by PyTorch (NCHW; tests/reference/pytorch/gen.py) imports as a
/// channels-last model whose predictions on the transposed inputs equal PyTorch's.
#[test]
fn a_pytorch_exported_cnn_predicts_what_pytorch_predicts() {
    let dir = root().join("tests/reference/pytorch");
    let fm = tmp("torch_cnn.fm");
    let i = fmc(&["import", s(&dir.join("torch_cnn.onnx")), "-o", s(&fm)]);
    assert_eq!(i.code, 0, "{}", i.stderr);
    let source = std::fs::read_to_string(&fm).unwrap();
    assert!(source.contains("x.transpose(0, 2, 3, 1)"), "{source}");
    assert!(source.contains("input x: f32[14, 14, 1]"), "{source}");
    let torch = fm_runtime::data::read_array(s(&dir.join("y.npy")))
        .unwrap()
        .data
        .to_f32();
    // Measured 1.4e-7 relative (f32 sums in another order than PyTorch's).
    predicts_within_1e_5(&fm, s(&dir.join("x.npy")), &torch, 4 * 10, "torch_cnn");
}

/// `examples/text_transformer.fm` (MultiHeadAttention, GELU) exported with the weights committed
/// for the onnxruntime references, imported back, and predicted on both backends: onnxruntime's
/// outputs (compiler/interop/tests/onnxruntime/gen.py) within 1e-5 relative.
#[test]
fn text_transformer_exports_imports_and_predicts_what_onnxruntime_predicts() {
    let model = root().join("examples/text_transformer.fm");
    let refs = root().join("compiler/interop/tests/onnxruntime");
    let onnx = tmp("text_transformer.onnx");
    let w = refs.join("text_transformer.safetensors");
    let e = fmc(&["export", s(&model), "--weights", s(&w), "-o", s(&onnx)]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let fm = tmp("text_transformer_imported.fm");
    let i = fmc(&["import", s(&onnx), "-o", s(&fm)]);
    assert_eq!(i.code, 0, "{}", i.stderr);
    let source = std::fs::read_to_string(&fm).unwrap();
    assert_eq!(
        source.matches("MultiHeadAttention(4, ").count(),
        2,
        "{source}"
    );
    assert_eq!(source.matches("Dense(128, gelu, ").count(), 2, "{source}");
    let x = format!("{}:tokens", refs.join("text_transformer.x.npz").display());
    let want = fm_runtime::data::read_array(&format!(
        "{}:probs",
        refs.join("text_transformer.ort.npz").display()
    ))
    .unwrap()
    .data
    .to_f32();
    predicts_within_1e_5(&fm, &x, &want, 6 * 2, "text_transformer");
}

/// `fmc predict` of the imported model `fm` (its weights beside it) on `input`, on the
/// interpreter and the JIT: `len` values within 1e-5 of `want`'s largest magnitude.
fn predicts_within_1e_5(fm: &Path, input: &str, want: &[f32], len: usize, name: &str) {
    for backend in ["interp", "jit"] {
        let out = tmp(&format!("{name}_{backend}.npy"));
        let p = fmc(&[
            "predict",
            s(fm),
            "--weights",
            s(&fm.with_extension("safetensors")),
            "--input",
            input,
            "--backend",
            backend,
            "-o",
            s(&out),
        ]);
        assert_eq!(p.code, 0, "{}", p.stderr);
        let ours = fm_runtime::data::read_array(s(&out)).unwrap().data.to_f32();
        assert_eq!(ours.len(), len);
        assert_eq!(ours.len(), want.len());
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = ours
            .iter()
            .zip(want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{name}, {backend}: {:.2e} relative", diff / scale);
        assert!(diff <= 1e-5 * scale, "{backend}: max difference {diff}");
    }
}
