//! Backends built from the reference interpreter that compute the same function with different
//! rounding, to calibrate the differential tests before the JIT exists:
//!
//! - [`F64Interpreter`]: the interpreter in f64 (parameters, optimizer state and every
//!   intermediate value in double precision, reported as f32). Its distance from the f32
//!   interpreter is the f32 rounding error of each value, which the tolerance allows for.
//! - [`ReversedBatch`]: the f32 interpreter fed the batch in reverse order, so every sum over
//!   the batch is taken in another order: a stand-in for a correct f32 backend that rounds
//!   differently, which the tolerance must admit.

use fm_compiler::exec::Session;
use fm_compiler::interp::{self, Context, Value};
use fm_compiler::ir::{eval_shape, ArgKind, Function, ResultKind};
use fm_runtime::tensor::{DType, Tensor};
use fm_runtime::train::{Backend, StepOutput};
use fm_runtime::{ErrorKind, RuntimeError};
use ndarray::{ArrayD, IxDyn};

/// A [`Session`] whose functions run in f64.
pub struct F64Interpreter {
    session: Session,
    params: Vec<ArrayD<f64>>,
    slots: Vec<ArrayD<f64>>,
}

impl F64Interpreter {
    /// Takes over the session's initial state.
    pub fn new(session: Session) -> Self {
        let params = session.params.iter().map(|p| p.mapv(f64::from)).collect();
        let slots = session.slots.iter().map(|s| s.2.mapv(f64::from)).collect();
        F64Interpreter {
            session,
            params,
            slots,
        }
    }

    fn bind(
        &self,
        f: &Function,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<Vec<Value<f64>>, String> {
        let batch = inputs.first().map_or(0, |t| t.len());
        let (mut input_i, mut target_i, mut slot_i) = (0, 0, 0);
        let next = |list: &[Tensor], i: &mut usize| {
            *i += 1;
            list.get(*i - 1).cloned().ok_or("missing input or target")
        };
        f.args
            .iter()
            .map(|a| {
                let data = match &a.kind {
                    ArgKind::Input => next(inputs, &mut input_i)?,
                    ArgKind::Target => next(targets, &mut target_i)?,
                    ArgKind::Param(p) => return Ok(Value::F(self.params[*p].clone())),
                    ArgKind::OptSlot { .. } => {
                        slot_i += 1;
                        return Ok(Value::F(self.slots[slot_i - 1].clone()));
                    }
                    ArgKind::LearningRate => {
                        return Ok(Value::F(ArrayD::from_elem(IxDyn(&[]), f64::from(lr))))
                    }
                    ArgKind::Step => {
                        let t = (self.session.iterations + 1) as f64;
                        return Ok(Value::F(ArrayD::from_elem(IxDyn(&[]), t)));
                    }
                    ArgKind::Grad(_) => {
                        return Err("the reference backend runs no apply_step".into())
                    }
                };
                let shape = IxDyn(&eval_shape(&a.shape, batch));
                let reshape = |e: ndarray::ShapeError| format!("`{}`: {e}", a.name);
                Ok(match a.dtype {
                    DType::F32 => Value::F(
                        data.to_f32()
                            .mapv(f64::from)
                            .into_shape_with_order(shape)
                            .map_err(reshape)?,
                    ),
                    DType::I32 => Value::I(
                        data.to_f32()
                            .mapv(|v| v as i32)
                            .into_shape_with_order(shape)
                            .map_err(reshape)?,
                    ),
                })
            })
            .collect()
    }

    fn run(
        &self,
        f: &Function,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<Vec<Value<f64>>, RuntimeError> {
        let args = self.bind(f, inputs, targets, lr).map_err(error)?;
        let ctx = Context {
            batch: inputs.first().map_or(0, |t| t.len()),
            seed: self.session.spec.seed,
            step: self.session.iterations,
            sample_offset: 0,
        };
        interp::run(f, &args, ctx).map_err(error)
    }

    /// Copies the f64 state into the session, rounded to f32.
    fn sync(&self) -> Session {
        let mut s = Session::new(self.session.graph.clone(), self.session.spec.clone())
            .expect("the session was built before");
        s.params = self.params.iter().map(to_f32).collect();
        for (slot, v) in s.slots.iter_mut().zip(&self.slots) {
            slot.2 = to_f32(v);
        }
        s.iterations = self.session.iterations;
        s
    }
}

fn to_f32(a: &ArrayD<f64>) -> ArrayD<f32> {
    a.mapv(|v| v as f32)
}

fn error(message: String) -> RuntimeError {
    RuntimeError::new(ErrorKind::Backend, None, message)
}

fn tensor(v: Value<f64>) -> Tensor {
    Tensor::F32(to_f32(&v.into_float()))
}

impl Backend for F64Interpreter {
    fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, RuntimeError> {
        let f = &self.session.train_fn;
        let results = self.run(f, inputs, targets, lr)?;
        let mut out = StepOutput {
            loss: 0.0,
            outputs: Vec::new(),
            extra: vec![],
        };
        let mut slot_k = 0;
        let kinds: Vec<ResultKind> = f.results.iter().map(|r| r.kind.clone()).collect();
        for (kind, v) in kinds.into_iter().zip(results) {
            match kind {
                ResultKind::Loss => out.loss = v.scalar(),
                ResultKind::Output(_) => out.outputs.push(tensor(v)),
                ResultKind::Param(p) => self.params[p] = v.into_float(),
                ResultKind::OptSlot { .. } => {
                    self.slots[slot_k] = v.into_float();
                    slot_k += 1;
                }
                ResultKind::Grad(_) | ResultKind::Metric(_) | ResultKind::StepLoss(_) => {}
            }
        }
        self.session.iterations += 1;
        Ok(out)
    }

    fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepOutput, RuntimeError> {
        let f = &self.session.eval_fn;
        let results = self.run(f, inputs, targets, 0.0)?;
        let mut out = StepOutput {
            loss: 0.0,
            outputs: Vec::new(),
            extra: vec![],
        };
        for (r, v) in f.results.iter().zip(results) {
            match r.kind {
                ResultKind::Loss => out.loss = v.scalar(),
                ResultKind::Output(_) => out.outputs.push(tensor(v)),
                _ => {}
            }
        }
        Ok(out)
    }

    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let results = self.run(&self.session.predict_fn, inputs, &[], 0.0)?;
        Ok(results.into_iter().map(tensor).collect())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.sync().state()
    }

    fn set_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RuntimeError> {
        let mut s = self.sync();
        s.set_state(state)
            .map_err(|m| RuntimeError::new(ErrorKind::Weights, None, m))?;
        *self = F64Interpreter::new(s);
        Ok(())
    }
}

/// The f32 interpreter fed the batch in reverse order (outputs put back in order): the same
/// math, with every sum over the batch (gradients, BatchNorm statistics, the mean loss) taken
/// in another order. It stands in for a correct backend that rounds differently, to check
/// that the differential tolerance admits one. Dropout masks depend on the sample's position,
/// so it agrees with the interpreter only on models without active dropout.
pub struct ReversedBatch(pub Session);

fn reversed(t: &Tensor) -> Tensor {
    match t {
        Tensor::F32(a) => {
            let mut a = a.clone();
            a.invert_axis(ndarray::Axis(0));
            Tensor::F32(a.as_standard_layout().into_owned())
        }
        Tensor::I32(a) => {
            let mut a = a.clone();
            a.invert_axis(ndarray::Axis(0));
            Tensor::I32(a.as_standard_layout().into_owned())
        }
    }
}

fn all_reversed(ts: &[Tensor]) -> Vec<Tensor> {
    ts.iter().map(reversed).collect()
}

impl Backend for ReversedBatch {
    fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, RuntimeError> {
        let mut out = Backend::train_step(
            &mut self.0,
            &all_reversed(inputs),
            &all_reversed(targets),
            lr,
        )?;
        out.outputs = all_reversed(&out.outputs);
        Ok(out)
    }
    fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepOutput, RuntimeError> {
        let mut out =
            Backend::evaluate(&mut self.0, &all_reversed(inputs), &all_reversed(targets))?;
        out.outputs = all_reversed(&out.outputs);
        Ok(out)
    }
    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        Ok(all_reversed(&Backend::predict(
            &mut self.0,
            &all_reversed(inputs),
        )?))
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        Backend::state(&self.0)
    }
    fn set_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RuntimeError> {
        Backend::set_state(&mut self.0, state)
    }
}
