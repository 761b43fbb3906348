// The generated API is typed: the wrong element type or a wrongly shaped sample does not compile.
use fm::ndarray::ArrayD;

fm::model!("tiny.fm");

fn main() {
    let model = Tiny::new(0);
    // Tiny takes f32 features, not i32 tokens.
    let tokens: ArrayD<i32> = ArrayD::zeros(vec![2, 3]);
    let _ = model.predict(tokens.view());
    // One sample of Tiny is `[f32; 3]`.
    let _ = model.forward(&[0.0f32; 4]);
}
