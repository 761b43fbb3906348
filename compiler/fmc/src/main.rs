//! `fmc`, the fm compiler driver (see `cli`).

fn main() {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let code = fmc::cli::run(
        std::env::args_os(),
        &mut out,
        &mut err,
        fmc::cli::Terminal::detect(),
    );
    drop(out);
    drop(err);
    std::process::exit(code);
}
