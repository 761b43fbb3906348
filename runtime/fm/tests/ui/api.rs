// The whole generated API of a file-based model, as a user crate calls it.
use fm::ndarray::{array, ArrayD};
use fm::train::{FitOptions, ProgressMode};

fm::model!("tiny.fm");
fm::model!("zoo.fm", model = large);

fn main() -> Result<(), fm::Error> {
    assert_eq!(Tiny::NAME, "tiny");
    assert_eq!(Tiny::INPUT_SHAPE, [3]);
    assert_eq!(Tiny::OUTPUT_SHAPE, [2]);
    assert_eq!(Tiny::PARAM_COUNT, 3 * 4 + 4 + 4 * 2 + 2);
    assert!(Tiny::SUMMARY.contains("Dense"), "{}", Tiny::SUMMARY);
    assert_eq!(Large::INPUT_SHAPE, [2]);

    assert_eq!(
        Tiny::default()
            .param("dense.kernel")
            .map(|k| k.shape().to_vec()),
        Some(vec![3, 4])
    );
    // `new` draws the file's initialisers; `Default` uses the train section's seed (5).
    let mut model = Tiny::default();
    assert_eq!(
        model.param("dense.kernel"),
        Tiny::new(5).param("dense.kernel")
    );
    assert_ne!(
        model.param("dense.kernel"),
        Tiny::new(6).param("dense.kernel")
    );

    let x: ArrayD<f32> = array![[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]].into_dyn();
    let y: ArrayD<f32> = array![[1.0, 0.0], [-1.0, 0.5]].into_dyn();
    let first = model.train_step(x.view(), y.view())?;
    assert_eq!(first.step, 1);
    assert!(first.loss.is_finite());
    let history = model.fit(
        x.view(),
        y.view(),
        FitOptions {
            progress: ProgressMode::Quiet,
            ..Default::default()
        },
    )?;
    assert_eq!(history.epochs.len(), 20);
    assert_eq!(history.step, 20); // the steps of this run
    assert_eq!(model.model().step(), 21);
    let after = model.train_step(x.view(), y.view())?;
    assert_eq!(after.step, 22);
    assert!(after.loss < first.loss, "{} !< {}", after.loss, first.loss);

    // Batch and one-sample inference agree.
    let batch = model.predict(x.view())?;
    assert_eq!(batch.shape(), [2, 2]);
    let one: [f32; 2] = model.forward(&[1.0, 0.0, 2.0])?;
    assert!((one[0] - batch[[0, 0]]).abs() < 1e-6 && (one[1] - batch[[0, 1]]).abs() < 1e-6);

    // A wrong shape is an error naming the expected shape, not a panic.
    let wrong: ArrayD<f32> = ArrayD::zeros(vec![2, 5]);
    let err = model.predict(wrong.view()).unwrap_err();
    assert!(err.to_string().contains("[batch, 3]"), "{err}");

    // Save, load, predict the same.
    let path = std::env::temp_dir().join(format!("fm-trybuild-{}.safetensors", std::process::id()));
    model.save(&path)?;
    let loaded = Tiny::load(&path)?;
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.predict(x.view())?, batch);
    assert_eq!(
        loaded.param("dense_1.kernel"),
        model.param("dense_1.kernel")
    );
    assert_eq!(loaded.model().step(), model.model().step());

    // A missing weights file is an error too.
    assert!(Tiny::load("/nonexistent/weights.safetensors").is_err());
    Ok(())
}
