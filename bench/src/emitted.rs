//! The benchmark's example models compiled to Rust by `fm::model!` when this crate builds: the
//! `macro` backend of `fm-bench --backends jit,macro`.

mod models {
    fm::model!("../../examples/digits_mlp.fm");
    fm::model!("../../examples/digits_cnn.fm");
    fm::model!("../../examples/mnist_mlp.fm");
    fm::model!("../../examples/mnist_cnn.fm");
}

/// The runtime model of a benchmark model by its `.fm` name, initialised with `seed`.
pub fn model(name: &str, seed: u64) -> Option<fm::compiled::Model> {
    use models::*;
    Some(match name {
        "digits_mlp" => DigitsMlp::new(seed).model().clone(),
        "digits_cnn" => DigitsCnn::new(seed).model().clone(),
        "mnist_mlp" => MnistMlp::new(seed).model().clone(),
        "cnn" => Cnn::new(seed).model().clone(),
        _ => return None,
    })
}
