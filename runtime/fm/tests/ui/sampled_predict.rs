// A generator whose outputs need only sampled inputs predicts from a number of samples: giving
// it a batch of data does not compile.
use fm::ndarray::ArrayD;

fm::model!("sampled.fm");

fn main() {
    let gan = Noise::new(0);
    let real: ArrayD<f32> = ArrayD::zeros(vec![2, 2]);
    let _ = gan.predict(real.view());
}
