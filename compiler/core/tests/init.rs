//! Initialisers follow Keras's definitions: fans from the shape, the variance-scaling family's
//! limits and (truncated-normal-corrected) standard deviations, orthogonality, seeding.

use fm_compiler::graph::Init;
use fm_compiler::init::{draw, fans, Rng};

fn stats(v: &[f32]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let max = v.iter().map(|&x| (x as f64).abs()).fold(0.0, f64::max);
    (mean, var.sqrt(), max)
}

#[test]
fn fans_follow_keras_compute_fans() {
    assert_eq!(fans(&[64, 128]), (64.0, 128.0));
    assert_eq!(fans(&[3, 3, 32, 64]), (288.0, 576.0));
    assert_eq!(fans(&[5, 16, 32]), (80.0, 160.0));
    assert_eq!(fans(&[10]), (10.0, 10.0));
}

#[test]
fn variance_scaling_family() {
    let shape = [300, 200];
    let (fan_in, fan_out) = (300.0f64, 200.0f64);
    let cases = [
        (
            Init::GlorotUniform,
            (6.0 / (fan_in + fan_out)).sqrt() / 3f64.sqrt(),
            Some((6.0 / (fan_in + fan_out)).sqrt()),
        ),
        (
            Init::HeUniform,
            (6.0 / fan_in).sqrt() / 3f64.sqrt(),
            Some((6.0 / fan_in).sqrt()),
        ),
        // Truncated normals at 2 std, scaled so the truncated std is the requested one.
        (
            Init::GlorotNormal,
            (2.0 / (fan_in + fan_out)).sqrt(),
            Some(2.0 * (2.0 / (fan_in + fan_out)).sqrt() / 0.8796),
        ),
        (
            Init::HeNormal,
            (2.0 / fan_in).sqrt(),
            Some(2.0 * (2.0 / fan_in).sqrt() / 0.8796),
        ),
        (
            Init::LecunNormal,
            (1.0 / fan_in).sqrt(),
            Some(2.0 * (1.0 / fan_in).sqrt() / 0.8796),
        ),
        (
            Init::Normal {
                mean: 0.5,
                std: 0.1,
            },
            0.1,
            None,
        ),
        (
            Init::Uniform {
                lo: -0.05,
                hi: 0.05,
            },
            0.1 / 12f64.sqrt(),
            Some(0.05),
        ),
    ];
    for (init, want_std, bound) in cases {
        let v = draw(init, &shape, &mut Rng::new(7, 0));
        let (mean, std, max) = stats(v.as_slice().unwrap());
        let want_mean = if let Init::Normal { mean, .. } = init {
            mean
        } else {
            0.0
        };
        assert!(
            (mean - want_mean).abs() < 0.02 * want_std.max(0.01) * 10.0,
            "{init:?}: mean {mean}"
        );
        assert!(
            (std / want_std - 1.0).abs() < 0.02,
            "{init:?}: std {std}, expected {want_std}"
        );
        if let Some(b) = bound {
            assert!(max <= b * 1.0001, "{init:?}: {max} beyond {b}");
        }
    }
}

#[test]
fn constants_and_lstm_forget_bias() {
    assert!(draw(Init::Zeros, &[5], &mut Rng::new(0, 0))
        .iter()
        .all(|&v| v == 0.0));
    assert!(draw(Init::Ones, &[5], &mut Rng::new(0, 0))
        .iter()
        .all(|&v| v == 1.0));
    assert!(draw(Init::Constant(0.25), &[5], &mut Rng::new(0, 0))
        .iter()
        .all(|&v| v == 0.25));
    let b = draw(Init::LstmBias, &[12], &mut Rng::new(0, 0));
    assert_eq!(
        b.as_slice().unwrap(),
        &[0., 0., 0., 1., 1., 1., 0., 0., 0., 0., 0., 0.]
    );
}

#[test]
fn orthogonal_rows_or_columns_are_orthonormal() {
    for shape in [[8usize, 32], [32, 8], [16, 16]] {
        let q = draw(Init::Orthogonal, &shape, &mut Rng::new(3, 1));
        let q = q.into_shape_with_order((shape[0], shape[1])).unwrap();
        let gram = if shape[0] <= shape[1] {
            q.dot(&q.t())
        } else {
            q.t().dot(&q)
        };
        for ((i, j), &v) in gram.indexed_iter() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-5, "{shape:?}: gram[{i},{j}] = {v}");
        }
    }
}

#[test]
fn seeded_and_independent_per_parameter() {
    let a = draw(Init::GlorotUniform, &[4, 4], &mut Rng::new(42, 0));
    let b = draw(Init::GlorotUniform, &[4, 4], &mut Rng::new(42, 0));
    let c = draw(Init::GlorotUniform, &[4, 4], &mut Rng::new(43, 0));
    let d = draw(Init::GlorotUniform, &[4, 4], &mut Rng::new(42, 1));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
}
