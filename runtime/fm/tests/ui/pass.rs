//! The whole generated API, compiled and run.

use fm::ndarray::{array, ArrayD, Axis};
use fm::train::{FitOptions, ProgressMode};

fm::model!("zoo.fm", model = small_mlp);
fm::model!("zoo.fm", model = bag_of_tokens);
fm::model! {
    /// Inline: linear regression on 2 features.
    model line {
        input x: f32[2]
        output y = x -> Dense(1)
    }
    train {
        loss: mse
        optimizer: SGD(lr: 0.05)
        batch_size: 2
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    assert_eq!(SmallMlp::NAME, "small_mlp");
    assert_eq!(SmallMlp::INPUT_SHAPE, [4]);
    assert_eq!(SmallMlp::OUTPUT_SHAPE, [3]);
    assert_eq!(SmallMlp::PARAM_COUNT, 4 * 8 + 8 + 8 * 3 + 3);
    assert!(SmallMlp::SUMMARY.contains("Total params: 67"));

    let mut model = SmallMlp::default();
    let x: ArrayD<f32> = array![[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, -1.0, 0.5], [2.0, 2.0, 0.0, 1.0], [0.5, -0.5, 1.5, 0.0]].into_dyn();
    let y: ArrayD<i32> = array![0, 1, 2, 1].into_dyn();
    let first = model.train_step(x.view(), y.view())?;
    assert_eq!(first.step, 1);
    assert_eq!(first.metrics[0].0, "accuracy");
    let history = model.fit(
        x.view(),
        y.view(),
        FitOptions { steps: Some(40), progress: ProgressMode::Quiet, ..Default::default() },
    )?;
    assert_eq!(history.step, 41);
    let last = model.train_step(x.view(), y.view())?;
    assert!(last.loss < first.loss, "{} !< {}", last.loss, first.loss);

    let dir = std::env::temp_dir().join(format!("fm-pass-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("small.safetensors");
    model.save(&path)?;
    let loaded = SmallMlp::load(&path)?;
    let (a, b) = (model.predict(x.view())?, loaded.predict(x.view())?);
    assert_eq!(a, b);
    assert_eq!(a.shape(), [4, 3]);
    let one = model.forward(&[0.0, 1.0, 2.0, 3.0])?;
    let row: Vec<f32> = a.index_axis(Axis(0), 0).iter().copied().collect();
    assert!(one.iter().zip(&row).all(|(p, q)| (p - q).abs() < 1e-6));
    let wrong: ArrayD<f32> = ArrayD::zeros(vec![4, 5]);
    let err = model.predict(wrong.view()).unwrap_err();
    assert!(err.to_string().contains("expected [batch, 4]"), "{err}");
    std::fs::remove_dir_all(&dir)?;

    let bag = BagOfTokens::new(0);
    let tokens: ArrayD<i32> = array![[1, 2, 3, 4, 5, 6], [0, 0, 19, 19, 3, 3]].into_dyn();
    assert_eq!(bag.predict(tokens.view())?.shape(), [2, 2]);

    let mut line = Line::new(0);
    let xs: ArrayD<f32> = array![[1.0, 2.0], [2.0, -1.0]].into_dyn();
    let ys: ArrayD<f32> = array![[5.0], [0.0]].into_dyn();
    let before = line.train_step(xs.view(), ys.view())?.loss;
    for _ in 0..20 {
        line.train_step(xs.view(), ys.view())?;
    }
    assert!(line.train_step(xs.view(), ys.view())?.loss < before);
    Ok(())
}
