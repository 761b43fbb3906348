//! `fmc`, the fm compiler driver (see `cli`).

fn main() {
    // Unlocked handles: each write takes the stream's lock for that write only. Holding
    // `stderr().lock()` for the whole process deadlocks the progress bar, whose ticker thread
    // draws on stderr while holding the bar's state lock (the main thread then waits for that
    // state lock in `set_message`); compiler/fmc/tests/pty.rs runs every command on a terminal.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = fmc::cli::run(
        std::env::args_os(),
        &mut out,
        &mut err,
        fmc::cli::Terminal::detect(),
    );
    let _ = std::io::Write::flush(&mut out);
    std::process::exit(code);
}
