//! The command-line reference (`compiler/fmc/CLI.md`), generated from the clap definitions so it
//! cannot drift from the binary: every command's usage and every argument with its value,
//! default and help text, the global options in their own table. `tests/cli_docs.rs` checks the
//! committed file against this (`BLESS=1` rewrites it).

use clap::Arg;

/// The whole reference as Markdown.
pub fn markdown() -> String {
    let mut cmd = super::command();
    cmd.build();
    let mut out = String::from(
        "# `fmc` command-line reference\n\n\
         <!-- Generated from compiler/fmc/src/cli/ by `BLESS=1 cargo test --release -p fmc --test \
         cli_docs`; do not edit by hand. -->\n\n",
    );
    out.push_str(&format!(
        "{}. Results go to stdout, progress and diagnostics to stderr. Exit status: 0 success, 1 \
         the input is wrong (a diagnostic was printed) or `fmt --check` found changes, 2 the \
         command line is wrong.\n\n",
        cmd.get_about().map(|a| a.to_string()).unwrap_or_default()
    ));
    out.push_str("## Global options (every command)\n\n");
    let globals: Vec<&Arg> = cmd.get_arguments().filter(|a| a.is_global_set()).collect();
    table(&mut out, &globals);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        out.push_str(&format!("\n## `fmc {}`\n\n", sub.get_name()));
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            out.push_str(&format!("{about}.\n\n"));
        }
        let usage = sub
            .clone()
            .bin_name(format!("fmc {}", sub.get_name()))
            .render_usage()
            .to_string();
        let usage = usage.trim_start_matches("Usage: ").trim();
        out.push_str(&format!("Usage: `{usage}`\n\n"));
        let own: Vec<&Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        table(&mut out, &own);
    }
    out
}

fn table(out: &mut String, args: &[&Arg]) {
    out.push_str("| argument | default | meaning |\n|---|---|---|\n");
    for a in args {
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('\n', " ");
        let mut meaning = help;
        let values: Vec<String> = a
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| match v.get_help() {
                Some(h) => format!("`{}`: {h}", v.get_name()),
                None => format!("`{}`", v.get_name()),
            })
            .collect();
        if !values.is_empty() && !a.is_positional() {
            meaning.push_str(&format!(" ({})", values.join("; ")));
        }
        let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .filter(|_| takes_value)
            .map(|d| format!("`{}`", d.to_string_lossy()))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            cell(&format!("`{}`", spelling(a))),
            cell(&defaults.join(", ")),
            cell(&meaning)
        ));
    }
}

/// How the argument is written: `<FILE>`, `-o, --output <Y.npy>`, `--json`.
fn spelling(a: &Arg) -> String {
    let value = || {
        a.get_value_names()
            .map(|names| names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|| vec![a.get_id().as_str().to_uppercase()])
            .join(" ")
    };
    if a.is_positional() {
        let v = value();
        return if a.get_num_args().is_some_and(|n| n.max_values() > 1) {
            format!("<{v}>...")
        } else {
            format!("<{v}>")
        };
    }
    let mut names = Vec::new();
    if let Some(s) = a.get_short() {
        names.push(format!("-{s}"));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("--{l}"));
    }
    let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
    if takes_value {
        format!("{} <{}>", names.join(", "), value())
    } else {
        names.join(", ")
    }
}

/// A Markdown table cell: `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
