//! `fmc`, the fm compiler driver.

fn main() {
    eprintln!("fmc: not yet implemented");
    std::process::exit(2);
}
