//! Trains the digits CNN of `examples/digits_cnn.fm` from Rust with `fm::model!`: the model is
//! compiled to Rust at build time (no fm compiler at run time), trained on the file's `data`
//! section with its `train` section, saved as safetensors, reloaded, and used to predict.
//!
//! `cargo run --release [-- EPOCHS]` (default: the file's 30 epochs).

use fm::ndarray::Axis;
use fm::train::{FitOptions, ProgressMode};
use fm::Tensor;

// The path is relative to this file.
fm::model!("../../digits_cnn.fm");

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), fm::Error> {
    let mut model = DigitsCnn::default();
    println!("{}", DigitsCnn::SUMMARY);
    if let Some(epochs) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        model.model_mut().spec_mut().epochs = epochs;
    }

    // The file's `data` section: 1437 training and 360 test images, scaled to [0, 1].
    let data = model.file_data()?;
    let test = data.test.expect("digits_cnn.fm holds out a test split");
    model.fit_file_data(FitOptions {
        progress: ProgressMode::Lines,
        ..Default::default()
    })?;
    let logs = model.evaluate(&test)?;
    let accuracy = logs.iter().find(|(k, _)| k == "accuracy").map_or(0.0, |l| l.1);
    println!("test accuracy: {accuracy:.4}");

    let path = std::env::temp_dir().join("rust_digits_cnn.safetensors");
    model.save(&path)?;
    let reloaded = DigitsCnn::load(&path)?;
    println!("saved and reloaded {}", path.display());

    // The images as f32 (the data set keeps the file's bytes and converts them per batch).
    let Tensor::F32(images) = test.inputs[0].to_tensor() else {
        return Err(fm::Error::backend("expected f32 images"));
    };
    let probs = reloaded.predict(images.view())?;
    if probs != model.predict(images.view())? {
        return Err(fm::Error::backend("the reloaded model predicts differently"));
    }
    let labels = test.targets[0].to_f32();
    let mut correct = 0;
    for (row, label) in probs.axis_iter(Axis(0)).zip(labels.iter()) {
        let best = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        correct += usize::from(best as f32 == *label);
    }
    println!(
        "reloaded model: {correct} of {} test digits right ({:.4})",
        labels.len(),
        correct as f64 / labels.len() as f64
    );
    // One image, statically shaped.
    let first: [[[f32; 1]; 8]; 8] = std::array::from_fn(|y| {
        std::array::from_fn(|x| [images[[0, y, x, 0]]])
    });
    let p = reloaded.forward(&first)?;
    println!("first test image: probabilities {p:.3?}, label {}", labels[0]);
    Ok(())
}
