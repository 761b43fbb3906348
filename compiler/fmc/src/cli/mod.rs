//! The `fmc` driver: command-line parsing (clap) and one function per subcommand, each in its own
//! file. `run` is the whole program minus process exit, so tests can call it in-process.
//!
//! Exit codes (cli.md): 0 success, 1 the input is wrong (a diagnostic was printed) or
//! `fmt --check` found changes, 2 the command line is wrong.

mod check;
mod compile;
mod eval;
mod explain;
mod export;
mod fmt;
mod import;
mod plot;
mod predict;
pub mod reference;
mod session;
mod summary;
mod train;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use fm_compiler::check::Checked;
use fm_compiler::diag::{self, MessageFormat, SourceFile};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The help heading of the flags every subcommand takes, kept apart from each command's own.
const GLOBAL: &str = "Global options";

#[derive(Parser, Debug)]
#[command(
    name = "fmc",
    version,
    about = "The fm compiler driver",
    propagate_version = true
)]
struct Cli {
    /// When to colour diagnostics (NO_COLOR turns `auto` off).
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, help_heading = GLOBAL)]
    color: ColorChoice,
    /// How diagnostics are printed (json: one object per line).
    #[arg(long, global = true, value_enum, value_name = "FORMAT", default_value_t = FormatChoice::Human, help_heading = GLOBAL)]
    message_format: FormatChoice,
    /// Print only errors.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    quiet: bool,
    /// Print more (compile times, kernel counts).
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    verbose: bool,
    /// Memory budget models are checked against before anything is allocated, and the most a
    /// compressed data file may expand to (`512M`, `8G`; default: this machine's memory).
    #[arg(long, global = true, value_name = "SIZE", value_parser = fm_compiler::check::limits::parse_memory)]
    memory_limit: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum FormatChoice {
    Human,
    Short,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum EmitKind {
    /// The parsed file, with spans.
    Ast,
    /// The tensor IR of the train step and inference, before optimization.
    Ir,
    /// The same after the optimization passes.
    IrOpt,
    /// What `model!` expands to (pretty-printed Rust).
    Rust,
    /// The Cranelift IR of the JIT's kernels.
    Clif,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Parse and check names, types and shapes; prints only diagnostics.
    Check {
        /// The `.fm` file.
        file: PathBuf,
    },
    /// Keras-style model summary and the resolved training setup.
    Summary {
        /// The `.fm` file.
        file: PathBuf,
        /// Plain ASCII table (also used when stdout is not a terminal).
        #[arg(long)]
        ascii: bool,
        /// The model to summarise when the file has several (default: all).
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Also report the memory the JIT plans for one training step and for predict at
        /// this batch size.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
        batch_size: Option<u64>,
    },
    /// Format files canonically.
    Fmt {
        /// The `.fm` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a diff and exit 1 instead of rewriting when a file would change.
        #[arg(long)]
        check: bool,
    },
    /// Print an intermediate form.
    Compile {
        /// The `.fm` file.
        file: PathBuf,
        /// What to print.
        #[arg(long, value_enum, value_name = "KIND")]
        emit: EmitKind,
        /// Write here (atomically) instead of stdout.
        #[arg(short = 'o', long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// The model, when the file has several.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
    },
    /// Compile, train, report, save.
    Train(train::TrainArgs),
    /// Loss and metrics on the test split (or the given data).
    Eval(eval::EvalArgs),
    /// Inference: `.npy` with `-o`, else one line per sample (a classifier's starts with its
    /// class).
    Predict(predict::PredictArgs),
    /// Loss and metric curves per epoch.
    Plot(plot::PlotArgs),
    /// Turn an ONNX model into a formatted `.fm` file and safetensors weights.
    Import(import::ImportArgs),
    /// Write a trained model's inference graph as ONNX.
    Export(export::ExportArgs),
    /// The long explanation of a diagnostic code.
    Explain {
        /// A code such as `E0203` or `W0101`.
        code: String,
    },
}

/// The clap definition of the whole command line (for help texts and the generated reference).
pub fn command() -> clap::Command {
    Cli::command()
}

/// What the process environment says about the terminal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Terminal {
    pub stdout_is_tty: bool,
    pub stderr_is_tty: bool,
    /// `NO_COLOR` is set to a non-empty value.
    pub no_color: bool,
    /// Terminal width in columns, when known.
    pub columns: Option<usize>,
    /// The locale's character set is not UTF-8 (box drawing would not display).
    pub non_utf8_locale: bool,
}

impl Terminal {
    pub fn detect() -> Self {
        use std::io::IsTerminal;
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .filter(|&c: &usize| c > 0);
        // The first of LC_ALL, LC_CTYPE, LANG that is set decides; unset or `C` counts as
        // UTF-8, as Python (which Keras's summary runs in) coerces the C locale to UTF-8.
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|v| !v.is_empty())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let non_utf8_locale =
            locale.contains('.') && !locale.contains("utf-8") && !locale.contains("utf8");
        Terminal {
            non_utf8_locale,
            stdout_is_tty: std::io::stdout().is_terminal(),
            stderr_is_tty: std::io::stderr().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            columns,
        }
    }
}

/// Options every subcommand sees.
pub struct Global<'w> {
    pub out: &'w mut dyn Write,
    pub err: &'w mut dyn Write,
    pub format: MessageFormat,
    pub color: bool,
    pub quiet: bool,
    pub verbose: bool,
    pub term: Terminal,
    /// The memory budget (`--memory-limit`, or this machine's memory).
    pub limits: fm_compiler::check::Limits,
}

impl Global<'_> {
    /// Prints diagnostics to stderr (warnings are left out with `--quiet`).
    pub fn print_diagnostics(&mut self, diags: &[fm_grammar::Diagnostic], file: &SourceFile) {
        for d in diags {
            if self.quiet && !d.is_error() {
                continue;
            }
            let text = diag::render(d, file, self.format, self.color);
            let _ = self.err.write_all(text.as_bytes());
        }
    }

    /// A problem with no source location (unreadable file), printed like a diagnostic.
    pub fn fail(&mut self, message: &str) {
        let text = match self.format {
            MessageFormat::Json => serde_json::json!({
                "code": null, "severity": "error", "message": message, "file": null,
                "line": null, "column": null, "end_line": null, "end_column": null,
                "labels": [], "notes": []
            })
            .to_string(),
            _ => {
                let word = if self.color {
                    "\x1b[1;31merror\x1b[0m"
                } else {
                    "error"
                };
                format!("{word}: {message}")
            }
        };
        let _ = writeln!(self.err, "{text}");
    }
}

/// Prints an import or export error (`error[E0412]: FILE: node ...: message`); returns exit 1.
pub fn interop_error(g: &mut Global, e: &fm_interop::InteropError) -> i32 {
    let text = match g.format {
        MessageFormat::Json => serde_json::json!({
            "code": e.code.as_str(), "severity": "error", "message": e.to_string(),
            "file": e.file, "line": null, "column": null, "end_line": null, "end_column": null,
            "labels": [], "notes": []
        })
        .to_string(),
        _ => format!("error[{}]: {e}", e.code),
    };
    let _ = writeln!(g.err, "{text}");
    1
}

/// Reads, parses and checks a file, printing its diagnostics. `Err(exit code)` when it could not
/// be read or has errors.
pub fn load_checked(g: &mut Global, path: &Path) -> Result<(String, Checked), i32> {
    let (source, checked) = match fm_compiler::check::check_file_with(path, &g.limits) {
        Ok(x) => x,
        Err(e) => {
            g.fail(&format!("cannot read `{}`: {e}", path.display()));
            return Err(1);
        }
    };
    let name = path.display().to_string();
    g.print_diagnostics(
        &checked.diagnostics,
        &SourceFile {
            name: &name,
            text: &source,
        },
    );
    if checked.has_errors() {
        Err(1)
    } else {
        Ok((source, checked))
    }
}

/// Runs `fmc` with these arguments (the first is the program name). Returns the exit code.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    term: Terminal,
) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = write!(out, "{}", e.render());
                    return 0;
                }
                _ => 2,
            };
            let _ = write!(err, "{}", e.render());
            return code;
        }
    };
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => term.stderr_is_tty && !term.no_color,
    };
    let format = match cli.message_format {
        FormatChoice::Human => MessageFormat::Human,
        FormatChoice::Short => MessageFormat::Short,
        FormatChoice::Json => MessageFormat::Json,
    };
    // Compressed data files may not expand past the budget either.
    fm_runtime::data::read::set_decompressed_limit(cli.memory_limit);
    let mut g = Global {
        out,
        err,
        format,
        color,
        quiet: cli.quiet,
        verbose: cli.verbose,
        term,
        limits: cli.memory_limit.map_or_else(
            fm_compiler::check::Limits::default,
            fm_compiler::check::Limits::with_memory,
        ),
    };
    // Under an MPI launcher only `train` uses the ranks (data-parallel); every other command
    // runs on rank 0 alone, and the other ranks end at once, silently and successfully, so
    // that nothing is printed or written twice.
    let other_rank = fm_runtime::distributed::launcher_rank().is_some_and(|r| r > 0);
    if other_rank && !matches!(cli.command, Command::Train(_)) {
        return 0;
    }
    match cli.command {
        Command::Check { file } => check::run(&mut g, &file),
        Command::Summary {
            file,
            ascii,
            model,
            batch_size,
        } => summary::run(
            &mut g,
            &file,
            ascii,
            model.as_deref(),
            batch_size.map(|n| n as usize),
        ),
        Command::Fmt { files, check } => fmt::run(&mut g, &files, check),
        Command::Compile {
            file,
            emit,
            output,
            model,
        } => compile::run(&mut g, &file, emit, output.as_deref(), model.as_deref()),
        Command::Train(args) => train::run(&mut g, &args),
        Command::Eval(args) => eval::run(&mut g, &args),
        Command::Predict(args) => predict::run(&mut g, &args),
        Command::Plot(args) => plot::run(&mut g, &args),
        Command::Import(args) => import::run(&mut g, &args),
        Command::Export(args) => export::run(&mut g, &args),
        Command::Explain { code } => explain::run(&mut g, &code),
    }
}
