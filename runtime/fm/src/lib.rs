//! fm for Rust programs: a model written in a `.fm` file, compiled into your crate at build
//! time by [`model!`], trained, saved, loaded and run with no Python and no runtime compiler.
//!
//! ```
//! fm::model! {
//!     /// A tiny regression model.
//!     model tiny {
//!         input x: f32[3]
//!         output y = x -> Dense(4, relu) -> Dense(1)
//!     }
//!     train {
//!         loss: mse
//!         optimizer: SGD(lr: 0.1)
//!         batch_size: 4
//!         seed: 7
//!     }
//! }
//!
//! use fm::ndarray::{array, ArrayD};
//!
//! let mut model = Tiny::new(7);
//! assert_eq!(Tiny::INPUT_SHAPE, [3]);
//! assert_eq!(Tiny::OUTPUT_SHAPE, [1]);
//! assert_eq!(Tiny::PARAM_COUNT, 3 * 4 + 4 + 4 + 1);
//!
//! let x: ArrayD<f32> = array![[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]].into_dyn();
//! let y: ArrayD<f32> = array![[1.0], [-1.0]].into_dyn();
//! let first = model.train_step(x.view(), y.view())?;
//! for _ in 0..50 {
//!     model.train_step(x.view(), y.view())?;
//! }
//! let last = model.train_step(x.view(), y.view())?;
//! assert!(last.loss < first.loss);
//! assert_eq!(last.step, 52);
//!
//! let prediction = model.predict(x.view())?;
//! assert_eq!(prediction.shape(), [2, 1]);
//!
//! // A wrong shape is an error that names the expected one, never a panic.
//! let wrong: ArrayD<f32> = ArrayD::zeros(vec![2, 5]);
//! let err = model.predict(wrong.view()).unwrap_err();
//! assert!(err.to_string().contains("expected [batch, 3]"), "{err}");
//! # Ok::<(), fm::Error>(())
//! ```
//!
//! # What `model!` generates
//!
//! For model `digits_cnn`, a struct `DigitsCnn` (documented with the model's `///` lines) with
//! - `new(seed)`: parameters from the file's initialisers, as `fmc train` draws them with that
//!   seed; `Default` uses the `train` section's seed;
//! - `load(path)` / `save(path)`: safetensors files in the layout of language.md section 7,
//!   interchangeable with `fmc train`'s `weights.safetensors` and `fmc predict --weights`;
//! - `predict(x)`: a batch `[batch, ...]` in (`ArrayViewD<f32>`, or `i32` for token inputs; one
//!   argument per input, named after it, when the model has several), the output out; a wrong
//!   shape is an [`Error`] naming the expected shape;
//! - `forward(&x)`: one sample, statically shaped (`&[[[f32; 1]; 8]; 8]` in, `[f32; 10]` out);
//! - `train_step(x, y)`: one optimizer step with the file's loss, optimizer, schedule and
//!   clipping, returning [`compiled::StepStats`] (loss, metrics, step);
//! - `fit(x, y, options)`: the runtime's training loop with the file's `train` section (epochs,
//!   batch size, validation, early stopping, checkpoints, progress on stderr) and
//!   [`train::FitOptions`] overrides; `fit_file_data` trains on the file's `data` section;
//! - consts `NAME`, `INPUT_SHAPE`, `OUTPUT_SHAPE`, `PARAM_COUNT` and `SUMMARY` (the
//!   `fmc summary` table).
//!
//! Language 0.2 files (language.md 9) compile too, as `fmc train` runs them:
//! - a sampled input (`input z: f32[32] ~ normal(0, 1)`) is no argument: the generated code
//!   draws it from the counter-based stream of `fmc` (the same bits for the same seed and
//!   step); when every input the outputs need is drawn, `predict(samples: usize)` takes a
//!   number of samples (a GAN's generator);
//! - `train_step` and `fit` take the inputs read from data, then the targets: the `target`
//!   declarations a loss expression reads (`train_step(cell, next_cell, action, reward, done)`);
//! - a `train` section with `step`s has one method per step (`train_step_disc`,
//!   `train_step_gen`), and `train_step` runs them in order and reports each loss in
//!   [`compiled::StepStats::step_losses`]; `finish_step` ends a step taken step by step;
//! - lagged weights (`copy(every:)`, `ema`) are parameters `lag/CALL/PARAM` of the struct,
//!   updated after each step, saved and loaded with the others.
//!
//! `fmc compile FILE --emit rust` prints exactly what the macro expands to.
//!
//! # The rest of this crate
//!
//! - the runtime API (re-exported from `fm-runtime`): [`tensor::Tensor`], [`data`], [`train`],
//!   [`metrics`], [`weights`], [`compiled`] (what generated code links against);
//! - [`ndarray`], the array type tensors are made of, so users need no version of their own;
//! - [`io`]: `.npy` files as tensors.
//!
//! ```
//! use fm::ndarray::ArrayD;
//! use fm::Tensor;
//!
//! let dir = std::env::temp_dir().join(format!("fm-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("x.npy");
//! let t = Tensor::F32(ArrayD::from_elem(vec![2, 3], 0.5));
//! fm::io::write_npy(&path, &t)?;
//! assert_eq!(fm::io::read_npy(&path)?, t);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use fm_runtime::*;
pub use ndarray;

pub use fm_macros::model;
pub use fm_runtime::tensor::{DType, Tensor};

/// Every error of fm's runtime: bad files, wrong shapes, write failures. Displays as
/// `PATH: message`; [`Error::code`] gives the stable `E04xx` code.
pub type Error = fm_runtime::RuntimeError;

pub mod io;
