// Language 0.2 from Rust (language.md 9): a GAN whose generator output needs only the sampled
// input, so `predict` takes a number of samples; one method per training step; the lagged
// weights saved and loaded with the parameters.
use fm::ndarray::{array, ArrayD};

fm::model!("sampled.fm");

fn main() -> Result<(), fm::Error> {
    let mut gan = Noise::default();
    // `image` depends on `z` alone: no input to give.
    let images = gan.predict(4)?;
    assert_eq!(images.shape(), [4, 2]);
    // The same step draws the same noise (the counter-based stream of `fmc`).
    assert_eq!(gan.predict(4)?, images);

    let real: ArrayD<f32> = array![[1.0, 0.5], [0.8, 0.9], [1.2, 0.7]].into_dyn();
    let stats = gan.train_step(real.view())?;
    assert_eq!(stats.step, 1);
    let names: Vec<&str> = stats.step_losses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["disc_loss", "gen_loss"]);
    let sum: f64 = stats.step_losses.iter().map(|(_, l)| l).sum();
    assert!((stats.loss - sum).abs() < 1e-9);
    // A new step draws new noise.
    assert_ne!(gan.predict(4)?, images);

    // Step by step: the discriminator twice, then the generator, then the step ends.
    let d = gan.train_step_disc(real.view())?;
    let d2 = gan.train_step_disc(real.view())?;
    assert!(d2.loss < d.loss, "{} !< {}", d2.loss, d.loss);
    gan.train_step_gen(real.view())?;
    assert_eq!(gan.step(), 1);
    gan.finish_step();
    assert_eq!(gan.step(), 2);

    let path = std::env::temp_dir().join(format!("fm-trybuild-gan-{}.safetensors", std::process::id()));
    gan.save(&path)?;
    let loaded = Noise::load(&path)?;
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.predict(3)?, gan.predict(3)?);
    assert_eq!(loaded.param("g.kernel"), gan.param("g.kernel"));
    Ok(())
}
