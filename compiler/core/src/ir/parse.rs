//! Reads the text form of [`print`](super::print) back (`.fmir` files), so passes can be run and
//! tested on hand-written functions: `fmc compile f.fmir --emit ir-opt`, and the filetests.
//!
//! The text is line-oriented; `;` and `//` start comments (filetests keep their directives there). What
//! the printed form leaves out is filled in: a `param` argument is parameter number k (counting
//! `param` arguments in order), an `opt` argument is a slot of parameter 0, and results are
//! model outputs in order (`"loss"` is the loss). Value names need not be dense: `%7` is
//! whatever the line defining `%7` computes. A `kernels { ... }` section after the function is
//! skipped (the `fuse` pass chooses kernels). The parsed function is verified.

use super::verify::verify;
use super::*;
use std::collections::HashMap;

/// A parse error at 1-based `line`:`col`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// Parses one function.
pub fn parse_function(text: &str) -> Result<Function, ParseError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split([';']).next().unwrap_or("")))
        .map(|(i, l)| (i, l.split("//").next().unwrap_or("")))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut p = Parser {
        lines: &lines,
        at: 0,
        ids: HashMap::new(),
        func: Function {
            name: String::new(),
            args: Vec::new(),
            insts: Vec::new(),
            results: Vec::new(),
            kernels: None,
        },
    };
    p.function()?;
    let end_line = lines.last().map_or(1, |l| l.0);
    verify(&p.func).map_err(|message| ParseError {
        line: end_line,
        col: 1,
        message: format!("the function does not verify: {message}"),
    })?;
    Ok(p.func)
}

struct Parser<'a> {
    lines: &'a [(usize, &'a str)],
    at: usize,
    /// Printed value name -> instruction index.
    ids: HashMap<usize, ValueId>,
    func: Function,
}

/// A cursor over one line.
struct Line<'a> {
    line: usize,
    text: &'a str,
    pos: usize,
}

impl<'a> Line<'a> {
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            col: self.pos + 1,
            message: message.into(),
        }
    }
    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with([' ', '\t']) {
            self.pos += 1;
        }
    }
    fn rest(&mut self) -> &'a str {
        self.skip_ws();
        &self.text[self.pos..]
    }
    fn at_end(&mut self) -> bool {
        self.rest().is_empty()
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &str) -> Result<(), ParseError> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{s}`")))
        }
    }
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let n = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }
    fn ident(&mut self) -> Result<&'a str, ParseError> {
        let s = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        if s.is_empty() {
            Err(self.err("expected a name"))
        } else {
            Ok(s)
        }
    }
    fn number<T: std::str::FromStr>(&mut self) -> Result<T, ParseError> {
        let start = self.pos;
        let s = self.take_while(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        s.parse().map_err(|_| {
            self.pos = start;
            self.err(format!("expected a number, found `{s}`"))
        })
    }
    fn value_name(&mut self) -> Result<usize, ParseError> {
        self.expect("%")?;
        self.number()
    }
    fn string(&mut self) -> Result<String, ParseError> {
        self.expect("\"")?;
        let rest = &self.text[self.pos..];
        let end = rest
            .find('"')
            .ok_or_else(|| self.err("unterminated string"))?;
        self.pos += end + 1;
        Ok(rest[..end].to_string())
    }
    fn dim(&mut self) -> Result<Dim, ParseError> {
        if self.eat("N") {
            if self.eat("*") {
                return Ok(Dim::Batch(self.number()?));
            }
            return Ok(Dim::N);
        }
        Ok(Dim::Fixed(self.number()?))
    }
    /// `f32[N, 3]`
    fn ty(&mut self) -> Result<(Shape, DType), ParseError> {
        self.skip_ws();
        let start = self.pos;
        let dtype = match self.ident()? {
            "f32" => DType::F32,
            "i32" => DType::I32,
            other => {
                self.pos = start;
                return Err(self.err(format!("unknown element type `{other}`")));
            }
        };
        self.expect("[")?;
        let mut shape = Vec::new();
        if !self.eat("]") {
            loop {
                shape.push(self.dim()?);
                if self.eat("]") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok((shape, dtype))
    }
    /// `[1, 2]`
    fn list(&mut self) -> Result<Vec<usize>, ParseError> {
        self.list_of()
    }
    fn list_of<T: std::str::FromStr>(&mut self) -> Result<Vec<T>, ParseError> {
        self.expect("[")?;
        let mut v = Vec::new();
        if !self.eat("]") {
            loop {
                v.push(self.number()?);
                if self.eat("]") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok(v)
    }
    /// `key=` then the value.
    fn key(&mut self, key: &str) -> Result<(), ParseError> {
        self.expect(key)?;
        self.expect("=")
    }
    /// `AxB`
    fn pair(&mut self) -> Result<[usize; 2], ParseError> {
        let a = self.number_until('x')?;
        self.expect("x")?;
        Ok([a, self.number()?])
    }
    fn number_until(&mut self, stop: char) -> Result<usize, ParseError> {
        let s = self.take_while(|c| c.is_ascii_digit() && c != stop);
        s.parse()
            .map_err(|_| self.err(format!("expected a number, found `{s}`")))
    }
    /// `kernel=3x3 stride=1x1 dilation=1x1 pad=1:1,1:1`
    fn window(&mut self) -> Result<Window, ParseError> {
        self.key("kernel")?;
        let kernel = self.pair()?;
        self.key("stride")?;
        let stride = self.pair()?;
        self.key("dilation")?;
        let dilation = self.pair()?;
        self.key("pad")?;
        let mut pad = [(0, 0); 2];
        for (i, p) in pad.iter_mut().enumerate() {
            if i == 1 {
                self.expect(",")?;
            }
            let before = self.number_until(':')?;
            self.expect(":")?;
            *p = (before, self.number_until(',')?);
        }
        Ok(Window {
            kernel,
            stride,
            dilation,
            pad,
        })
    }
}

/// Ops without attributes, by printed name.
fn plain_op(name: &str) -> Option<Op> {
    use BinaryOp as B;
    use UnaryOp as U;
    let unary = [
        U::Neg,
        U::Exp,
        U::Log,
        U::Sqrt,
        U::Tanh,
        U::Sigmoid,
        U::Erf,
        U::Abs,
        U::Sign,
        U::ToFloat,
        U::StopGradient,
    ];
    let binary = [
        B::Add,
        B::Sub,
        B::Mul,
        B::Div,
        B::Max,
        B::Min,
        B::Pow,
        B::Greater,
        B::GreaterEq,
        B::Equal,
    ];
    unary
        .into_iter()
        .map(Op::Unary)
        .chain(binary.into_iter().map(Op::Binary))
        .chain([Op::BatchSize, Op::Select, Op::Gather])
        .find(|op| op.name() == name)
}

impl<'a> Parser<'a> {
    fn line(&mut self) -> Option<Line<'a>> {
        let &(line, text) = self.lines.get(self.at)?;
        self.at += 1;
        Some(Line { line, text, pos: 0 })
    }
    fn next_line(&mut self, what: &str) -> Result<Line<'a>, ParseError> {
        let last = self.lines.last().map_or(1, |l| l.0);
        self.line().ok_or(ParseError {
            line: last,
            col: 1,
            message: format!("unexpected end of input: expected {what}"),
        })
    }
    fn push(&mut self, l: &Line, name: usize, inst: Inst) -> Result<(), ParseError> {
        if self.ids.insert(name, self.func.insts.len()).is_some() {
            return Err(l.err(format!("%{name} is defined twice")));
        }
        self.func.insts.push(inst);
        Ok(())
    }
    fn operand(&self, l: &mut Line) -> Result<ValueId, ParseError> {
        let start = l.pos;
        let name = l.value_name()?;
        self.ids.get(&name).copied().ok_or_else(|| {
            l.pos = start;
            l.err(format!("%{name} is not defined before this use"))
        })
    }

    fn function(&mut self) -> Result<(), ParseError> {
        let mut l = self.next_line("`fn NAME(`")?;
        l.expect("fn")?;
        self.func.name = l.ident()?.to_string();
        l.expect("(")?;
        let mut params = 0;
        let mut grads = 0;
        if !l.eat(")") {
            if !l.at_end() {
                return Err(l.err("expected one argument per line after `(`"));
            }
            loop {
                let mut l = self.next_line("an argument or `) {`")?;
                if l.eat(")") {
                    l.expect("{")?;
                    break;
                }
                let name = l.value_name()?;
                l.expect(":")?;
                let (shape, dtype) = l.ty()?;
                let kind = match l.ident()? {
                    "input" => ArgKind::Input,
                    "target" => ArgKind::Target,
                    "param" => {
                        params += 1;
                        ArgKind::Param(params - 1)
                    }
                    "opt" => ArgKind::OptSlot {
                        param: 0,
                        slot: "slot".into(),
                    },
                    "lr" => ArgKind::LearningRate,
                    "step" => ArgKind::Step,
                    "grad" => {
                        grads += 1;
                        ArgKind::Grad(grads - 1)
                    }
                    other => return Err(l.err(format!("unknown argument kind `{other}`"))),
                };
                let arg_name = l.string()?;
                l.expect(",")?;
                let index = self.func.args.len();
                self.func.args.push(Arg {
                    name: arg_name,
                    kind,
                    shape: shape.clone(),
                    dtype,
                });
                self.push(
                    &l,
                    name,
                    Inst {
                        op: Op::Arg { index },
                        args: vec![],
                        shape,
                        dtype,
                        origin: Origin::Unknown,
                    },
                )?;
            }
        } else {
            l.expect("{")?;
        }
        loop {
            let mut l = self.next_line("an instruction or `return`")?;
            if l.eat("return") {
                break;
            }
            self.instruction(&mut l)?;
            if !l.at_end() {
                return Err(l.err("unexpected text after the instruction"));
            }
        }
        let mut outputs = 0;
        loop {
            let mut l = self.next_line("a result or `}`")?;
            if l.eat("}") {
                break;
            }
            let name = l.string()?;
            l.expect("=")?;
            let value = self.operand(&mut l)?;
            let kind = if name == "loss" {
                ResultKind::Loss
            } else {
                outputs += 1;
                ResultKind::Output(outputs - 1)
            };
            self.func.results.push(FnResult { name, kind, value });
        }
        // An optional kernel plan: skipped.
        if let Some(mut l) = self.line() {
            l.expect("kernels")?;
            l.expect("{")?;
            loop {
                let mut l = self.next_line("`}` closing `kernels {`")?;
                if l.eat("}") {
                    break;
                }
            }
        }
        if let Some(l) = self.line() {
            return Err(l.err("unexpected text after the function"));
        }
        Ok(())
    }

    fn instruction(&mut self, l: &mut Line) -> Result<(), ParseError> {
        let name = l.value_name()?;
        l.expect("=")?;
        l.skip_ws();
        let op_start = l.pos;
        let op_name = l.ident()?;
        let mut args = Vec::new();
        if l.rest().starts_with('%') {
            loop {
                args.push(self.operand(l)?);
                if !l.eat(",") {
                    break;
                }
            }
        }
        // Attributes come before ` : type`; the type is parsed first where an op needs it.
        let colon = l.text[op_start..]
            .rfind(" : ")
            .map(|i| op_start + i)
            .ok_or_else(|| l.err("expected ` : TYPE` after the instruction"))?;
        let mut tl = Line {
            line: l.line,
            text: l.text,
            pos: colon + 3,
        };
        let (shape, dtype) = tl.ty()?;
        let mut a = Line {
            line: l.line,
            text: &l.text[..colon],
            pos: l.pos.min(colon),
        };
        let op = match op_name {
            "const" => Op::Const { value: a.number()? },
            "reduce_sum" | "reduce_max" => {
                a.key("axes")?;
                let axes = a.list()?;
                Op::Reduce {
                    op: if op_name == "reduce_sum" {
                        ReduceOp::Sum
                    } else {
                        ReduceOp::Max
                    },
                    axes,
                    keep_dims: a.eat("keep_dims"),
                }
            }
            "matmul" => Op::MatMul {
                transpose_a: a.eat("transpose_a"),
                transpose_b: a.eat("transpose_b"),
            },
            "conv2d" => Op::Conv2d {
                window: a.window()?,
            },
            "conv2d_back_kernel" => Op::Conv2dBackKernel {
                window: a.window()?,
            },
            "conv2d_back_input" => {
                let window = a.window()?;
                a.key("input")?;
                Op::Conv2dBackInput {
                    window,
                    input_hw: a.pair()?,
                }
            }
            "max_pool2d" | "avg_pool2d" | "max_pool2d_back" | "avg_pool2d_back" => {
                let kind = if op_name.starts_with("max") {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                };
                let window = a.window()?;
                if op_name.ends_with("_back") {
                    Op::Pool2dBack { kind, window }
                } else {
                    Op::Pool2d { kind, window }
                }
            }
            "reshape" => Op::Reshape {
                shape: shape.clone(),
            },
            "broadcast" => Op::Broadcast {
                shape: shape.clone(),
            },
            "random_uniform" => {
                a.key("salt")?;
                Op::RandomUniform {
                    shape: shape.clone(),
                    salt: a.number()?,
                }
            }
            "permute" => {
                a.key("perm")?;
                Op::Permute { perm: a.list()? }
            }
            "slice" => {
                a.key("axis")?;
                let axis = a.number()?;
                let start = a.number_until('.')?;
                a.expect("..")?;
                Op::Slice {
                    axis,
                    start,
                    end: a.number()?,
                }
            }
            "pad" => {
                a.key("axis")?;
                let axis = a.number()?;
                a.key("before")?;
                let before = a.number()?;
                a.key("after")?;
                Op::Pad {
                    axis,
                    before,
                    after: a.number()?,
                }
            }
            "concat" => {
                a.key("axis")?;
                Op::Concat { axis: a.number()? }
            }
            "scatter_add" => {
                a.key("rows")?;
                Op::ScatterAdd { rows: a.number()? }
            }
            "one_hot" => {
                a.key("depth")?;
                Op::OneHot { depth: a.number()? }
            }
            "bucketize" => {
                a.key("edges")?;
                Op::Bucketize {
                    edges: a.list_of()?,
                }
            }
            "lower_triangle" => {
                let [rows, cols] = a.pair()?;
                Op::LowerTriangle { rows, cols }
            }
            other => plain_op(other).ok_or_else(|| {
                a.pos = op_start;
                a.err(format!("unknown op `{other}`"))
            })?,
        };
        if !a.at_end() {
            return Err(a.err(format!("unexpected attribute for `{op_name}`")));
        }
        l.pos = tl.pos;
        self.push(
            l,
            name,
            Inst {
                op,
                args,
                shape,
                dtype,
                origin: Origin::Unknown,
            },
        )
    }
}
