//! `fmc explain CODE`: the long explanation of a diagnostic code.

use super::Global;

pub fn run(g: &mut Global, code: &str) -> i32 {
    let code = code.trim().to_ascii_uppercase();
    match fm_codes::explain(&code) {
        Some(text) => {
            let _ = writeln!(g.out, "{}", text.trim_end());
            0
        }
        None => {
            g.fail(&format!(
                "no diagnostic has the code `{code}` (codes look like `E0203` or `W0101`)"
            ));
            2
        }
    }
}
