//! Limits as diagnostics: inputs built to exhaust time, memory or stack end in a coded error (or
//! succeed) within generous time bounds. The sizes are the ones that used to abort `fmc` or take
//! tens of seconds and gigabytes (issue 13).

use fm_compiler::check::{check_source, check_source_with, Limits};
use fm_tests::fmc;
use std::path::Path;
use std::time::{Duration, Instant};

fn codes(src: &str) -> Vec<&'static str> {
    check_source(src, Path::new("t.fm"))
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.as_str())
        .collect()
}

/// Runs `f`, failing if it takes longer than `secs`.
fn within<T>(secs: u64, what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let v = f();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(secs),
        "{what} took {took:?} (bound {secs} s)"
    );
    v
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// 24 blocks, each calling the next twice: 2^25 layers from a 1 KB file, sized before expansion.
#[test]
fn block_fan_out_is_sized_before_expansion() {
    let mut src = String::new();
    for i in 0..24 {
        src += &format!("block b{i}(x) {{ return x -> b{} -> b{} }}\n", i + 1, i + 1);
    }
    src += "block b24(x) { return x -> relu }\n";
    src += "model m {\n    input x: f32[4]\n    output y = x -> b0 -> Dense(1)\n}\n";
    let d = within(5, "fan-out", || {
        check_source(&src, Path::new("t.fm")).diagnostics
    });
    let e = d
        .iter()
        .find(|d| d.code.as_str() == "E0219")
        .expect("E0219");
    assert!(
        e.primary
            .as_ref()
            .unwrap()
            .message
            .contains("at least 50,331,648 layers"),
        "{:?}",
        e.primary
    );
    // The largest contributor is named: the call of `b0`.
    assert!(e.secondary.iter().any(|l| l.message.contains("`b0`")));
    // Below the limit the same shape checks: 2^15 layers.
    let mut ok = String::new();
    for i in 0..14 {
        ok += &format!("block b{i}(x) {{ return x -> b{} -> b{} }}\n", i + 1, i + 1);
    }
    ok += "block b14(x) { return x -> relu }\n";
    ok += "model m {\n    input x: f32[4]\n    output y = x -> b0 -> Dense(1)\n}\n";
    assert_eq!(within(20, "2^15 layers", || codes(&ok)), Vec::<&str>::new());
}

/// A repeat count that is not a literal is counted once by the static size; the expander's own
/// count stops it.
#[test]
fn non_literal_repeat_counts_are_still_bounded() {
    let src = "block b(x, n: int) { return x -> repeat n { relu } }\n\
               block c(x) { return x -> b(9000) -> b(9000) }\n\
               model m {\n    input x: f32[4]\n    output y = x -> repeat 9 { c } -> Dense(1)\n}\n";
    assert_eq!(within(10, "repeat", || codes(src)), vec!["E0219"]);
}

fn chain(n: usize) -> String {
    let mut src = String::new();
    for i in 0..n {
        src += &format!("block c{i}(x) {{ return x -> c{} }}\n", i + 1);
    }
    src += &format!("block c{n}(x) {{ return x -> relu }}\n");
    src += "model m {\n    input x: f32[4]\n    output y = x -> c0 -> Dense(1)\n}\n";
    src
}

/// A chain of block calls: no stack overflow at any length (the test thread has a 2 MiB stack).
#[test]
fn long_chains_of_block_calls_do_not_overflow_the_stack() {
    // 200 nested calls are fine.
    assert_eq!(
        within(10, "chain 200", || codes(&chain(200))),
        Vec::<&str>::new()
    );
    for n in [1_800, 5_000, 50_000] {
        let d = within(20, "long chain", || {
            check_source(&chain(n), Path::new("t.fm")).diagnostics
        });
        let e = d.iter().find(|d| d.is_error()).expect("an error");
        assert_eq!(e.code.as_str(), "E0219", "{}", e.message);
        assert!(e.message.contains("nests block calls too deeply"));
    }
}

/// A wide pipeline nested in blocks: the dynamic depth guard, not the stack, ends it.
#[test]
fn deep_pipelines_inside_nested_blocks_are_bounded() {
    let stages = vec!["relu"; 500].join(" -> ");
    let mut src = String::new();
    for i in 0..200 {
        src += &format!("block c{i}(x) {{ return x -> {stages} -> c{} }}\n", i + 1);
    }
    src += "block c200(x) { return x -> relu }\n";
    src += "model m {\n    input x: f32[4]\n    output y = x -> c0 -> Dense(1)\n}\n";
    let c = within(20, "deep pipelines", || codes(&src));
    assert_eq!(c, vec!["E0219"]);
}

#[test]
fn models_over_the_memory_budget_are_errors_from_check() {
    let big =
        "model m {\n    input x: f32[4]\n    output y = x -> Dense(100000) -> Dense(100000)\n}\n";
    let limits = Limits::with_memory(16 << 30);
    let d = check_source_with(big, Path::new("t.fm"), &limits).diagnostics;
    let e = d.iter().find(|d| d.is_error()).expect("an error");
    assert_eq!(e.code.as_str(), "E0219");
    let label = &e.primary.as_ref().unwrap().message;
    assert!(label.contains("its parameters take 37.26 GB"), "{label}");
    assert!(
        label.contains("more than the `--memory-limit` of 16.00 GB"),
        "{label}"
    );
    assert!(
        e.notes.iter().any(|n| n.contains("`dense_1` 37.25 GB")),
        "{:?}",
        e.notes
    );

    // Fits as parameters (2.2 GB), not as a training step at batch size 32 (32.8 GB).
    let wide = "model m {\n    input x: f32[4]\n    output y = x -> Dense(100000000) -> Dense(1)\n}\n\
                train {\n    loss: mse\n    optimizer: Adam(lr: 1e-3)\n    epochs: 1\n    batch_size: 32\n}\n";
    let d = check_source_with(wide, Path::new("t.fm"), &limits).diagnostics;
    let e = d.iter().find(|d| d.is_error()).expect("an error");
    assert_eq!(e.code.as_str(), "E0308");
    let label = &e.primary.as_ref().unwrap().message;
    assert!(
        label.contains("batch size 32 needs about 32.78 GB"),
        "{label}"
    );
    assert!(
        e.notes.iter().any(|n| n.contains("`dense` 381.47 MB")),
        "{:?}",
        e.notes
    );
    // A smaller batch fits.
    let small = wide.replace("batch_size: 32", "batch_size: 4");
    assert!(!check_source_with(&small, Path::new("t.fm"), &limits).has_errors());
}

#[test]
fn memory_limit_flag() {
    let p = write_temp(
        "mlp.fm",
        "model m {\n    input x: f32[4]\n    output y = x -> Dense(1000)\n}\n",
    );
    let p = p.to_str().unwrap();
    assert_eq!(fmc(&["check", p]).code, 0);
    let run = fmc(&["--memory-limit", "10K", "check", p]);
    assert_eq!(run.code, 1);
    assert!(run
        .stderr
        .contains("error[E0219]: model `m` does not fit in memory"));
    assert!(run
        .stderr
        .contains("19.53 KB, more than the `--memory-limit` of 10.00 KB"));
    assert_eq!(fmc(&["--memory-limit", "lots", "check", p]).code, 2);
    // Also after the subcommand.
    assert_eq!(fmc(&["check", "--memory-limit", "1M", p]).code, 0);
}

#[test]
fn fmt_check_on_16000_models_is_fast() {
    let src: String = (0..16_000)
        .map(|i| format!("model m{i} {{ input x: f32[4]\n output y = x -> Dense(1) }}\n"))
        .collect();
    let p = write_temp("many.fm", &src);
    let run = within(30, "fmt --check", || {
        fmc(&["fmt", "--check", p.to_str().unwrap()])
    });
    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with("--- "));
    assert!(run.stdout.contains("+    output y = x -> Dense(1)\n"));
}

#[test]
fn twenty_thousand_chained_lets_check_fast() {
    let mut src = String::from("model m {\n    input x: f32[4]\n    let a0 = x\n");
    for i in 0..20_000 {
        src += &format!("    let a{} = a{i} -> relu\n", i + 1);
    }
    src += "    output y = a20000 -> Dense(1)\n}\n";
    assert_eq!(
        within(10, "20,000 lets", || codes(&src)),
        Vec::<&str>::new()
    );
    // An unknown name among them still gets its "defined later" note quickly.
    let bad = src.replace("let a5 = a4", "let a5 = a19999");
    let d = within(10, "unknown name", || {
        check_source(&bad, Path::new("t.fm")).diagnostics
    });
    let e = d.iter().find(|d| d.is_error()).expect("an error");
    assert_eq!(e.code.as_str(), "E0102");
    assert!(e
        .secondary
        .iter()
        .any(|l| l.message == "defined later, here"));
}

#[test]
fn a_640_kb_name_is_fast() {
    let name = "n".repeat(640_000);
    let src = format!(
        "model {name} {{\n    input x: f32[4]\n    output y = x -> Dense(1, name: \"{name}\")\n}}\n"
    );
    let p = write_temp("long.fm", &src);
    let run = within(10, "summary", || fmc(&["summary", p.to_str().unwrap()]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A typo of a very long name is reported without an edit-distance search.
    let typo = src.replace(
        "output y = x",
        &format!("let {name}a = x\n    output y = {name}b"),
    );
    let c = within(10, "long unknown name", || codes(&typo));
    assert_eq!(c, vec!["E0102"]);
}

/// The constructs of language 0.2 under hostile sizes: each a coded error (or a quick success).
#[test]
fn language_0_2_constructs_are_bounded() {
    let dqn = |lag: &str, train: &str| {
        format!(
            "version 0.2\nblock qnet(s) {{ return s -> Dense(8, relu) -> Dense(4) }}\n\
             model dqn {{\n    input state: f32[8]\n    input next_state: f32[8]\n    target action: i32[]\n\
             target reward: f32[]\n    let q = qnet(state, name: \"qn\")\n\
             let q_next = qn(next_state, weights: {lag})\n    output q_values = q\n}}\n{train}"
        )
    };
    let train = "train dqn {\n    loss: huber(pick(q, action), reward + 0.99 * max(q_next))\n    optimizer: Adam(lr: 1e-3)\n}\n";
    // A lagged copy refreshed every 0 steps, or every 10^20 (which used to saturate to "never").
    assert_eq!(codes(&dqn("copy(every: 0 steps)", train)), vec!["E0202"]);
    assert_eq!(
        codes(&dqn("copy(every: 99999999999999999999 steps)", train)),
        vec!["E0202"]
    );
    assert_eq!(
        codes(&dqn("copy(every: 1000000000 steps)", train)),
        Vec::<&str>::new()
    );
    assert_eq!(codes(&dqn("ema(2)", train)), vec!["E0202"]);
    // 5,000 training steps check in bounded time.
    let steps: String = (0..5_000)
        .map(|i| format!("    step s{i} {{ loss: huber(pick(q, action), reward), optimizer: SGD(lr: 0.01) }}\n"))
        .collect();
    let many = dqn(
        "copy(every: 5 steps)",
        &format!("train dqn {{\n{steps}}}\n"),
    );
    assert_eq!(
        within(20, "5,000 steps", || codes(&many)),
        Vec::<&str>::new()
    );
    // Objectives nested or chained 50,000 deep: the parser's and the evaluator's depth limits.
    for loss in [
        format!("{}mean(q){}", "(".repeat(50_000), ")".repeat(50_000)),
        format!("{}mean(q){}", "exp(".repeat(50_000), ")".repeat(50_000)),
        vec!["mean(q)"; 50_000].join(" + "),
    ] {
        let src = dqn(
            "copy(every: 5 steps)",
            &format!("train dqn {{\n    loss: {loss}\n    optimizer: Adam(lr: 1e-3)\n}}\n"),
        );
        assert_eq!(within(20, "deep objective", || codes(&src)), vec!["E0005"]);
    }
    // Sampled inputs of absurd shapes, and categorical weights that sum to nothing.
    let sampled = |decl: &str, rest: &str| {
        format!("version 0.2\nmodel g {{\n    input z: {decl}\n    output y = z -> {rest}\n}}\n")
    };
    assert_eq!(
        codes(&sampled(
            "f32[100000, 100000, 100000] ~ normal(0, 1)",
            "Flatten -> Dense(1)"
        )),
        vec!["E0210"]
    );
    let wide = format!("i32[1] ~ categorical([{}])", vec!["1"; 200_000].join(", "));
    assert_eq!(
        within(20, "200,000 weights", || codes(&sampled(
            &wide,
            "Embedding(200000, 4) -> Flatten -> Dense(1)"
        ))),
        Vec::<&str>::new()
    );
    for weights in ["[0, 0]", "[1, 2], power: 1e30"] {
        assert_eq!(
            codes(&sampled(
                &format!("i32[1] ~ categorical({weights})"),
                "Embedding(2, 4) -> Flatten -> Dense(1)"
            )),
            vec!["E0223"]
        );
    }
}

/// A `train` section of 2,000 `step` entries with named losses: trains (the steps read the
/// output's target, as a single `loss` does) in time linear in the steps (the summary used to
/// copy the whole training setup once per step).
#[test]
fn two_thousand_steps_train_in_linear_time() {
    use fm_runtime::data::npy::write_npy;
    use fm_runtime::tensor::Tensor;
    use ndarray::{ArrayD, IxDyn};
    let steps: String = (0..2_000)
        .map(|i| format!("    step s{i} {{ loss: mse, optimizer: SGD(lr: 0.001) }}\n"))
        .collect();
    let src = format!(
        "model m {{\n    input x: f32[4]\n    output y = x -> Dense(1)\n}}\n\
         train {{\n{steps}    epochs: 1\n    batch_size: 4\n}}\n"
    );
    let fm = write_temp("steps.fm", &src);
    let dir = fm.parent().unwrap();
    let x: Vec<f32> = (0..32).map(|i| (i % 7) as f32 / 7.0).collect();
    let y: Vec<f32> = x.chunks(4).map(|r| r.iter().sum()).collect();
    let xs = dir.join("steps_x.npy");
    let ys = dir.join("steps_y.npy");
    write_npy(
        &xs,
        &Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[8, 4]), x).unwrap()),
    )
    .unwrap();
    write_npy(
        &ys,
        &Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[8, 1]), y).unwrap()),
    )
    .unwrap();
    let run = within(60, "2,000 steps", || {
        fmc(&[
            "-q",
            "train",
            fm.to_str().unwrap(),
            "--x",
            xs.to_str().unwrap(),
            "--y",
            ys.to_str().unwrap(),
            "--backend",
            "interp",
            "--run-dir",
            dir.join("steps_run").to_str().unwrap(),
        ])
    });
    assert_eq!(run.code, 0, "{}", run.stderr);
}
