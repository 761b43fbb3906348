//! The registry of every diagnostic code the checker and the data commands emit, with a one-line
//! title and a long explanation (an example and the fix) for `fmc explain CODE`. Syntax codes
//! (E00xx) are the parser's and are delegated to `fm_grammar::codes::explain`.

/// One registered code.
pub struct CodeInfo {
    pub code: &'static str,
    pub title: &'static str,
    /// Example and fix, without the title line.
    pub body: &'static str,
}

const fn c(code: &'static str, title: &'static str, body: &'static str) -> CodeInfo {
    CodeInfo { code, title, body }
}

pub static CODES: &[CodeInfo] = &[
    c(
        "E0101",
        "unknown layer, function or block",
        "\
A stage or call names something that is neither a built-in layer (PascalCase, e.g. `Dense`),
a built-in function (`relu`, `concat`, `dim`) nor a `block` declared in this file.

Example:

    output y = x -> Dnse(10)

Fix: correct the spelling (`Dense`) or declare the block. The message suggests the closest
name when one is near. Names are case-sensitive: `dense` is not `Dense`.",
    ),
    c(
        "E0102",
        "unknown name",
        "\
An expression uses a name that is not an input, a `let`, or a block parameter in scope.

Example:

    block b(x, filters: int) {
        return x -> Conv2D(fitlers, 3)
    }

Fix: use a name that is defined before this point. Names are visible from their `let` onward,
and a block sees only its parameters and its own `let`s, not the model's.",
    ),
    c(
        "E0103",
        "unknown argument name",
        "\
A named argument does not exist for this layer, function, block or setting.

Example:

    Dense(64, activaton: relu)

Fix: use one of the argument names the message lists (here `activation`). language.md
sections 5 and 6 list every argument. Functions such as `relu` take no `name:`.",
    ),
    c(
        "E0104",
        "unknown value for an argument",
        "\
An argument that takes one of a fixed set of identifiers got another one: an activation,
a padding, an initialiser, `keep: best | last`, `validation: none | test | split(f)`.

Example:

    Conv2D(32, 3, padding: full)

Fix: use one of the values the note lists (`valid` or `same` here).",
    ),
    c(
        "E0105",
        "duplicate name",
        "\
The same name is defined twice where names must be unique: two models, blocks or data
sections with one name, two `let`s or inputs in one model or block, two outputs, an argument
given twice (positionally and by name), a key given twice, or two layers with the same
explicit `name:` in one naming scope.

Example:

    let h = x -> Dense(10)
    let h = h -> relu

Fix: rename one of them (`let h2 = h -> relu`).",
    ),
    c(
        "E0106",
        "recursive block",
        "\
A block calls itself, directly or through other blocks. Blocks are expanded at compile time
into layers, so recursion would never end.

Example:

    block tower(x) { return x -> Dense(8) -> tower }

Fix: write the repetition with `repeat N { ... }` in the caller:
`x -> repeat 4 { Dense(8) }`.",
    ),
    c(
        "E0107",
        "unknown or ambiguous model in `train`",
        "\
A `train NAME { ... }` section names a model that does not exist, or a `train { ... }`
without a name appears in a file with no model or with several models.

Example:

    model a { ... }
    model b { ... }
    train { loss: mse }

Fix: name the model: `train a { ... }`.",
    ),
    c(
        "E0108",
        "unknown data section",
        "\
`data: NAME` in a `train` section names no `data` section of this file.

Example:

    train { data: minst ... }

Fix: use the name of a `data NAME { ... }` section (`mnist`), or drop `data:` and give
files on the command line (`fmc train FILE --x X --y Y`).",
    ),
    c(
        "E0109",
        "unknown loss",
        "\
The `loss` is not one of `mse`, `mae`, `huber`, `binary_crossentropy`,
`categorical_crossentropy`, `sparse_categorical_crossentropy`.

Example:

    loss: crossentropy

Fix: pick the loss that matches the targets: integer class ids use
`sparse_categorical_crossentropy`, one-hot rows `categorical_crossentropy`, 0/1 labels
`binary_crossentropy`.",
    ),
    c(
        "E0110",
        "unknown optimizer",
        "\
The `optimizer` is not one of `SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad` (spelt as here).

Example:

    optimizer: adam(lr: 1e-3)

Fix: `optimizer: Adam(lr: 1e-3)`.",
    ),
    c(
        "E0111",
        "unknown schedule",
        "\
The `schedule` is not one of `Constant`, `Step`, `Exponential`, `Cosine`, `ReduceOnPlateau`.

Example:

    schedule: CosineDecay(warmup: 100 steps)

Fix: `schedule: Cosine(warmup: 100 steps)`.",
    ),
    c(
        "E0112",
        "unknown metric",
        "\
A `metrics` entry is not one of `accuracy`, `top_k(k)`, `mse`, `mae`, `precision`, `recall`.

Example:

    metrics: [acc]

Fix: `metrics: [accuracy]` (resolved from the loss as Keras does).",
    ),
    c(
        "E0113",
        "unknown key in a section",
        "\
A `train` or `data` section, or a dictionary such as `early_stopping: { ... }`, has a key
that means nothing there.

Example:

    train { epoch: 5 }

Fix: use a key from language.md section 6 (`epochs`). The message suggests the closest.",
    ),
    c(
        "E0114",
        "block named like a built-in",
        "\
A block may not take the name of a built-in layer or function, since calls to it would be
ambiguous.

Example:

    block relu(x) { return x }

Fix: rename the block (`block my_relu(x) { ... }`).",
    ),
    c(
        "E0116",
        "unknown element type",
        "\
An `input` declares an element type other than `f32` (features) or `i32` (token ids, class
indices).

Example:

    input x: f64[10]

Fix: `input x: f32[10]`; data of other types is converted when it is loaded.",
    ),
    c(
        "E0117",
        "unknown data source or transform",
        "\
A `data` section uses a source other than `idx`, `npy`, `npz`, `csv` (and `split(f)` for
`test:`), or a transform other than `scale(f)`, `standardize`, `one_hot(n)`.

Example:

    train: parquet(\"train.parquet\")

Fix: convert the data to one of the supported formats (cli.md, \"Data formats\").",
    ),
    c(
        "E0201",
        "wrong argument type",
        "\
A value has the wrong type for where it is used: an attribute that needs an integer got a
string, a name got a number, a dictionary appears in a model, a tensor appears where an
attribute is expected, and similar.

Example:

    Dense(\"64\")

Fix: pass a value of the type the message names: `Dense(64)`. Ints are accepted where a
float is expected, not the other way round.",
    ),
    c(
        "E0202",
        "value out of range",
        "\
A number is outside the range its argument allows: units, filters, kernel sizes, strides and
dimensions are positive; a `Dropout` rate is in [0, 1); `momentum` is in [0, 1); `lr` is
positive; a `split` fraction is in (0, 1).

Example:

    Dropout(1.5)

Fix: use a value in the range the message gives: `Dropout(0.5)`.",
    ),
    c(
        "E0203",
        "shapes do not match in elementwise arithmetic",
        "\
`+`, `-` and `*` combine two tensors elementwise with NumPy broadcasting over the per-sample
dimensions: aligned from the right, each pair of dimensions must be equal or one of them 1.

Example:

    block residual(x, filters: int) {
        let h = x -> Conv2D(filters, 3) -> Conv2D(filters, 3)
        return relu(x + h)
    }

Each 3x3 convolution with the default `padding: valid` shrinks the image by 2, so `h` is
28x28 while `x` is 32x32. The secondary label points at the layer that shrank it.

Fix: `Conv2D(filters, 3, padding: same)` keeps the spatial size; or project the shortcut so
the shapes agree.",
    ),
    c(
        "E0204",
        "wrong number of tensor inputs",
        "\
A call received more or fewer tensor inputs than it takes. In a pipeline the incoming value
is the first tensor input, and the leading arguments that are tensors come after it.

Example:

    let y = x -> Dense(h, 10)

Here `Dense` gets both `x` (piped) and `h`. Fix: `let y = h -> Dense(10)`, or combine first:
`(x + h) -> Dense(10)`. `MultiHeadAttention` takes 1 to 3 tensors (query, value, key),
`concat` at least 2, a block exactly its untyped parameters.",
    ),
    c(
        "E0205",
        "input has the wrong rank for the layer",
        "\
A layer received a tensor with the wrong number of per-sample dimensions. `Conv2D` and 2-D
pools need [H, W, C]; `Conv1D`, 1-D pools and recurrent layers need [L, C] / [T, C].

Example:

    input image: f32[28, 28]
    output y = image -> Conv2D(32, 3)

Fix: give the input a channel axis (`f32[28, 28, 1]`) or `Reshape([28, 28, 1])` first.",
    ),
    c(
        "E0206",
        "missing argument",
        "\
A required argument was not given: `Dense` needs `units`, `Conv2D` needs `filters` and
`kernel`, a block needs its parameters without defaults, a `train` section needs a `loss`,
a `data` section needs `train:`.

Example:

    x -> Conv2D(32)

Fix: `x -> Conv2D(32, 3)`.",
    ),
    c(
        "E0207",
        "too many positional arguments",
        "\
A call has more positional arguments than the table in language.md section 5 lists in
brackets; the rest must be named.

Example:

    Conv2D(32, 3, relu, 2)

Fix: name it: `Conv2D(32, 3, relu, stride: 2)`.",
    ),
    c(
        "E0208",
        "kernel or window larger than its input",
        "\
With `padding: valid` a convolution or pooling window must fit inside the input:
out = floor((in - (k - 1) * dilation - 1) / stride) + 1 must be at least 1.

Example:

    input x: f32[4, 4, 1]
    output y = x -> Conv2D(8, 5)

Fix: use a smaller kernel, `padding: same`, or fewer downsampling stages before it.",
    ),
    c(
        "E0209",
        "wrong element type",
        "\
A layer or operation received a tensor of the wrong element type. `Embedding` needs `i32`
token ids; every other layer, function and arithmetic needs `f32`.

Example:

    input tokens: i32[64]
    output y = tokens -> Dense(10)

Fix: embed the tokens first: `tokens -> Embedding(5000, 64) -> ...`.",
    ),
    c(
        "E0210",
        "invalid reshape or oversized tensor",
        "\
A `Reshape` target does not hold the same number of elements as its input, has more than
one -1, or has a zero or negative size; or a layer would create a tensor whose size
overflows.

Example:

    input x: f32[28, 28]
    output y = x -> Reshape([27, -1])

784 elements do not divide into rows of 27. Fix: `Reshape([28, 28, 1])` or `Reshape([-1])`.",
    ),
    c(
        "E0211",
        "axis out of range",
        "\
An `axis` argument (softmax, concat, dim) is outside [-rank, rank) of the per-sample shape.
The batch dimension cannot be addressed: axis 0 is the first per-sample dimension.

Example:

    input x: f32[10]
    output y = x -> softmax(axis: 1)

Fix: `softmax(axis: -1)` (the default).",
    ),
    c(
        "E0212",
        "integer required",
        "\
An argument that must be an integer folded to a non-integral value. Constant arithmetic
uses real division, so `64 / 3` is 21.33..., not 21.

Example:

    Dense(64 / 3)

Fix: use an integral expression: `Dense(21)`.",
    ),
    c(
        "E0213",
        "attention dimensions do not fit",
        "\
`MultiHeadAttention(heads)` derives `key_dim` as D / heads, where D is the query's last
dimension, so `heads` must divide D; and value and key need the same rank as the query and
the same sequence dimensions.

Example:

    x -> MultiHeadAttention(5)     // x is f32[64, 64]

Fix: a head count that divides 64 (`4` or `8`), or pass `key_dim:` explicitly.",
    ),
    c(
        "E0214",
        "shapes do not match in `concat`",
        "\
`concat` joins tensors along one axis; all other dimensions must be equal and the ranks
the same.

Example:

    concat(a, b)   // a is f32[8, 16], b is f32[4, 16]; joined on the last axis

Fix: join on the axis where they differ: `concat(a, b, axis: 0)`, or make them agree.",
    ),
    c(
        "E0215",
        "a tensor was expected (or is not allowed) here",
        "\
An expression is used where its kind does not fit: a number or name as a pipeline stage,
a layer used as a value without an input, `repeat` outside a pipeline, an output or block
result that is not a tensor, a pipeline inside a `train` section.

Example:

    output y = Flatten

Fix: give the layer its input: `output y = x -> Flatten`.",
    ),
    c(
        "E0216",
        "unsupported tensor arithmetic",
        "\
Tensors combine only with `+`, `-` and `*` (elementwise, broadcasting). Division, unary
minus, and arithmetic between a tensor and a number are not operations of the language.

Example:

    let y = x / 255

Fix: scale with a layer: `x -> Rescale(1 / 255)` (or a `scale(...)` transform in the data
section).",
    ),
    c(
        "E0218",
        "misplaced or missing statement",
        "\
A model must declare at least one `input` and one `output`; a block must end with exactly
one `return`; `input` and `output` belong in models, `return` in blocks; a `data` section
needs a name.

Example:

    block b(x) { let h = x -> relu }

Fix: `block b(x) { return x -> relu }`.",
    ),
    c(
        "E0219",
        "model too large",
        "\
A model is over one of the limits fm checks before allocating anything:
- block expansion and `repeat` produce more than 100,000 layers (sized from the text before
  expanding, so `block b(x) { return x -> c -> c }` chains that double at every level are
  caught in microseconds);
- block calls nest more than 256 deep, or expressions and block calls together more than
  4,096 levels;
- its parameters, or the activations of one sample, take more memory than the budget: this
  machine's memory, or `--memory-limit SIZE` (`512M`, `8G`).
The message names the largest contributors (block calls, or layers with their sizes).

Example:

    model m {
        input x: f32[4]
        output y = x -> Dense(100000) -> Dense(100000)   // 37 GB of parameters
    }

Fix: reduce the repeat counts or layer sizes, call blocks one after another rather than
from each other, or raise `--memory-limit` on a larger machine.",
    ),
    c(
        "E0301",
        "loss does not fit the output",
        "\
The training loss cannot be applied to the model's output:
- `binary_crossentropy` needs a last dimension of 1 (one probability or logit), and not a
  softmax output;
- `categorical_crossentropy` and `sparse_categorical_crossentropy` need at least 2 classes
  in the last dimension, and not a sigmoid output;
- losses need an f32 output.

Example:

    output probs = x -> Dense(10, softmax)
    train { loss: binary_crossentropy }

Fix: for class indices use `sparse_categorical_crossentropy`; for a yes/no label end the
model in `Dense(1, sigmoid)`.",
    ),
    c(
        "E0302",
        "two clipping options",
        "\
An optimizer takes at most one of `clip_norm` (per variable), `global_clip_norm` (over all
gradients) and `clip_value` (elementwise), as Keras allows only one.

Example:

    optimizer: Adam(clip_norm: 1.0, clip_value: 0.5)

Fix: keep one: `Adam(clip_norm: 1.0)`.",
    ),
    c(
        "E0304",
        "missing loss",
        "\
A `train` section has no `loss`; there is no default.

Fix: add one, e.g. `loss: sparse_categorical_crossentropy` for integer class targets.",
    ),
    c(
        "E0305",
        "loss map does not match the outputs",
        "\
With several outputs, `loss: { out1: ..., out2: ... }` and `loss_weights: { ... }` must name
existing outputs, and every output needs a loss.

Example:

    output a = ...
    output b = ...
    train { loss: { a: mse } }

Fix: `loss: { a: mse, b: mae }`.",
    ),
    c(
        "E0306",
        "data does not match the model's inputs",
        "\
A model with several inputs needs one array per input: its data section must use
`npz(path, x: { input: \"key\", ... }, y: \"key\")` and name every input exactly once.

Example:

    data d { train: npz(\"d.npz\", x: { image: \"img\" }, y: \"label\") }
    model m { input image: f32[8]  input meta: f32[2]  output y = concat(image, meta) -> Dense(1) }
    train { data: d  loss: mse }

Fix: `x: { image: \"img\", meta: \"meta\" }`.",
    ),
    c(
        "E0307",
        "validation on a missing test split",
        "\
`validation: test` uses the data section's test split, but the data section has no `test:`.

Fix: add `test: split(0.2)` (or a test source) to the data section, or use
`validation: split(0.2)`.",
    ),
    c(
        "E0308",
        "training needs more memory than the budget",
        "\
One training step at the configured `batch_size` is planned before training starts: weights,
gradients and optimizer state (Adam keeps two tensors per weight, SGD with momentum one),
plus the activations of the batch and their gradients. When the plan is over the budget
(this machine's memory, or `--memory-limit SIZE`), `fmc check` reports it, naming the
batch size, both parts and the largest layers.

Example:

    model m {
        input x: f32[4]
        output y = x -> Dense(100000000) -> Dense(1)
    }
    train { loss: mse  optimizer: Adam(lr: 1e-3)  epochs: 1  batch_size: 32 }

needs about 33 GB: 9 GB of weights and optimizer state and 24 GB of activations.

Fix: lower `batch_size`, make the largest layers smaller, or raise `--memory-limit`.",
    ),
    c(
        "E0401",
        "data file cannot be read",
        "\
A data file named by a `data` section or on the command line does not exist or cannot be
opened. Paths in a `.fm` file are relative to the file's directory.

Fix: check the path; `fmc check` never opens data files, so this appears only in commands
that read data.",
    ),
    c(
        "E0402",
        "unrecognised data format",
        "\
A data file's content is not IDX, `.npy`, `.npz` or CSV with a header, or it uses an element
type that is not supported.

Fix: convert the file (cli.md, \"Data formats\").",
    ),
    c(
        "E0403",
        "data shape does not fit the model",
        "\
The samples' shape, count or element type does not fit the model's input or the loss's
targets (for example images of 32x32 for an `f32[28, 28, 1]` input, or a different number of
inputs and labels). A sample shape equal to the input shape without its trailing 1s is
accepted.

Fix: check the input declaration and the file; the message names both shapes.",
    ),
    c(
        "E0404",
        "NaN or infinity in the data",
        "\
An input contains NaN or an infinity.

Fix: clean the data, or pass `--allow-nan` if it is intended.",
    ),
    c(
        "W0101",
        "unused `let`",
        "\
A `let` binding is never used, so the layers it computes do not contribute to any output
(they get no gradient and no weights are trained for them).

Example:

    let h = x -> Dense(64)
    output y = x -> Dense(10)

Fix: use it (`output y = h -> Dense(10)`), remove it, or start its name with `_`.",
    ),
    c(
        "W0102",
        "monitor that no metric produces",
        "\
`early_stopping`, `checkpoint` or `ReduceOnPlateau` monitors a quantity training never logs:
a `val_` quantity without `validation:`, or a metric that is not in `metrics`.

Example:

    metrics: [accuracy]
    early_stopping: { monitor: val_acc }

Fix: monitor a logged name (`val_accuracy`), and add `validation: split(0.2)` for `val_`
quantities.",
    ),
    c(
        "W0103",
        "`from_logits: true` on a probability output",
        "\
The loss is told its input are logits, but the model already ends in softmax or sigmoid, so
the activation is applied twice and training is slow or stalls.

Fix: drop the final activation (`Dense(10)`), or use `from_logits: false`.",
    ),
];

/// The registered code, if any.
pub fn info(code: &str) -> Option<&'static CodeInfo> {
    CODES.iter().find(|c| c.code == code)
}

/// The long explanation of `code` (with its title line), for `fmc explain`.
pub fn explain(code: &str) -> Option<String> {
    if code.starts_with("E00") {
        return fm_grammar::codes::explain(code).map(|s| s.to_string());
    }
    info(code).map(|c| format!("{}: {}\n\n{}\n", c.code, c.title, c.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_checker_emits_is_registered() {
        let sources = [
            include_str!("check/bind.rs"),
            include_str!("check/data.rs"),
            include_str!("check/expand.rs"),
            include_str!("check/items.rs"),
            include_str!("check/layers.rs"),
            include_str!("check/train.rs"),
            include_str!("check/values.rs"),
        ];
        for src in sources {
            for (i, _) in src.match_indices("\"E0").chain(src.match_indices("\"W0")) {
                let code = &src[i + 1..i + 6];
                if code.chars().skip(1).all(|c| c.is_ascii_digit()) {
                    assert!(info(code).is_some(), "{code} is not registered");
                }
            }
        }
    }

    #[test]
    fn codes_are_unique_and_explained() {
        for (i, a) in CODES.iter().enumerate() {
            assert!(!a.body.is_empty());
            assert!(
                CODES[i + 1..].iter().all(|b| b.code != a.code),
                "{}",
                a.code
            );
        }
        assert!(explain("E0203")
            .unwrap()
            .starts_with("E0203: shapes do not match"));
        assert!(explain("E0001").is_some());
        assert!(explain("E9999").is_none());
    }
}
