//! The abstract syntax tree of a `.fm` file.
//!
//! Every node carries a byte [`Span`] into the source so that later stages (checking, shape
//! inference, diagnostics) can point at exactly what the user wrote. The tree is purely
//! syntactic: names are not resolved and nothing is classified as a tensor or an attribute.

use std::fmt;

/// A half-open byte range `start..end` into the source text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// An identifier with its span.
#[derive(Clone, PartialEq, Debug)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A whole `.fm` file.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct File {
    /// `version 0.1`, if present: the version text as written and its span.
    pub version: Option<(String, Span)>,
    pub items: Vec<Item>,
    /// Every `//` and `/* */` comment (not `///` doc comments, which live on their items), in
    /// source order. Kept so that `fmc fmt` can put them back.
    pub comments: Vec<Comment>,
}

#[derive(Clone, PartialEq, Debug)]
pub struct Comment {
    /// The full comment text including the `//` or `/* */` delimiters.
    pub text: String,
    pub span: Span,
}

#[derive(Clone, PartialEq, Debug)]
pub enum Item {
    Model(Model),
    Block(Block),
    Data(Section),
    Train(Section),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Model(m) => m.span,
            Item::Block(b) => b.span,
            Item::Data(s) | Item::Train(s) => s.span,
        }
    }
}

/// `model NAME { stmts }`
#[derive(Clone, PartialEq, Debug)]
pub struct Model {
    /// `///` doc comment lines, without the `///` and with one leading space removed.
    pub doc: Vec<String>,
    pub name: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// `block NAME(params) { stmts }` (the last statement is normally `return`).
#[derive(Clone, PartialEq, Debug)]
pub struct Block {
    pub doc: Vec<String>,
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// A block parameter: `x` (tensor) or `filters: int = 32` (attribute).
#[derive(Clone, PartialEq, Debug)]
pub struct Param {
    pub name: Ident,
    pub ty: Option<ParamTy>,
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParamTyKind {
    Int,
    Float,
    Bool,
    Ident,
}

#[derive(Clone, PartialEq, Debug)]
pub struct ParamTy {
    pub kind: ParamTyKind,
    pub span: Span,
}

#[derive(Clone, PartialEq, Debug)]
pub enum Stmt {
    /// `input NAME: DTYPE[D1, D2]`, optionally `~ DISTRIBUTION(...)` (a sampled input).
    Input {
        name: Ident,
        dtype: Ident,
        dims: Vec<Expr>,
        /// The distribution call after `~`.
        sample: Option<Expr>,
        span: Span,
    },
    /// `target NAME: DTYPE[D1, ...]`: a per-sample value read from the data for losses and
    /// metrics (version 0.2).
    Target {
        name: Ident,
        dtype: Ident,
        dims: Vec<Expr>,
        span: Span,
    },
    /// `let NAME = EXPR`
    Let {
        name: Ident,
        value: Expr,
        span: Span,
    },
    /// `output NAME = EXPR` or `output EXPR`
    Output {
        name: Option<Ident>,
        value: Expr,
        span: Span,
    },
    /// `return EXPR`
    Return { value: Expr, span: Span },
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Input { span, .. }
            | Stmt::Target { span, .. }
            | Stmt::Let { span, .. }
            | Stmt::Output { span, .. }
            | Stmt::Return { span, .. } => *span,
        }
    }
}

/// `data NAME { key: value ... }` or `train [MODEL] { key: value ... }`.
#[derive(Clone, PartialEq, Debug)]
pub struct Section {
    pub doc: Vec<String>,
    /// Required for `data`, optional for `train`.
    pub name: Option<Ident>,
    pub entries: Vec<Entry>,
    pub span: Span,
}

/// `key: value` inside a `data` or `train` section or a `{ ... }` dictionary.
#[derive(Clone, PartialEq, Debug)]
pub struct Entry {
    pub key: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DurationUnit {
    Epochs,
    Steps,
}

#[derive(Clone, PartialEq, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl Expr {
    /// Splits a pipeline `a -> B -> C` (stored left-nested) into its head value `a` and its
    /// stages `[B, C]` in order, without recursion. A non-pipeline is its own head with no
    /// stages.
    pub fn pipeline(&self) -> (&Expr, Vec<&Expr>) {
        let mut stages = Vec::new();
        let mut cur = self;
        while let ExprKind::Pipe { lhs, stage } = &cur.kind {
            stages.push(stage.as_ref());
            cur = lhs;
        }
        stages.reverse();
        (cur, stages)
    }
}

#[derive(Clone, PartialEq, Debug)]
pub enum ExprKind {
    /// A numeric literal. `text` is exactly what was written (`1e-3`), `value` its f64 value,
    /// `is_int` true when written without `.`, `e` or `E`.
    Number {
        text: String,
        value: f64,
        is_int: bool,
    },
    /// A string literal with escapes already processed.
    Str(String),
    /// `true` / `false`
    Bool(bool),
    /// A bare identifier: a `let` name, an input, a block parameter, an enum value, or a call
    /// without parentheses (`Flatten`, `relu`).
    Name(Ident),
    /// `callee(args)`: a layer, function, block, loss, optimizer, data source...
    Call { callee: Ident, args: Vec<Arg> },
    /// `lhs -> stage`: the pipeline operator, left-associative, so `a -> B -> C` is
    /// `Pipe(Pipe(a, B), C)`. `stage` is a `Name`, `Call` or `Repeat`.
    Pipe { lhs: Box<Expr>, stage: Box<Expr> },
    /// `repeat N { stage -> stage ... }`: `body` holds the stages in order.
    Repeat { count: Box<Expr>, body: Vec<Expr> },
    /// `lhs op rhs` for `+ - * /`.
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// Unary minus.
    Neg(Box<Expr>),
    /// `( expr )`, kept so the formatter can reproduce it.
    Paren(Box<Expr>),
    /// `[a, b, ...]`
    List(Vec<Expr>),
    /// `{ key: value, ... }` (loss maps, `early_stopping: { ... }`, npz keys).
    Dict(Vec<Entry>),
    /// `step NAME { key: value ... }`: the value of a `train` entry whose key is `step`.
    Step { name: Ident, body: Vec<Entry> },
    /// `5 epochs`, `500 steps` (also `1 epoch`, `1 step`).
    Duration {
        value: Box<Expr>,
        unit: DurationUnit,
    },
}

/// One call argument: positional (`64`) or named (`padding: same`).
#[derive(Clone, PartialEq, Debug)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}
