//! The documentation of the command line agrees with the binary:
//! - `compiler/fmc/CLI.md` is what `fmc::cli::reference::markdown()` generates from the clap
//!   definitions (`BLESS=1` rewrites it);
//! - every argument of every command has a help text;
//! - every flag the README and cli.md name is accepted by the commands they name it for.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn built() -> clap::Command {
    let mut cmd = fmc::cli::command();
    cmd.build();
    cmd
}

#[test]
fn the_generated_reference_is_up_to_date() {
    let path = root().join("compiler/fmc/CLI.md");
    let actual = fmc::cli::reference::markdown();
    if std::env::var_os("BLESS").is_some_and(|v| v != "0") {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} is stale: run `BLESS=1 cargo test --release -p fmc --test cli_docs`\n--- generated\n{actual}",
        path.display()
    );
}

#[test]
fn every_argument_has_a_help_text() {
    let cmd = built();
    let mut missing = Vec::new();
    for sub in cmd.get_subcommands() {
        assert!(
            sub.get_about().is_some(),
            "`fmc {}` has no about",
            sub.get_name()
        );
        for a in sub.get_arguments() {
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("fmc {} {}", sub.get_name(), a.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "arguments without help: {missing:?}");
}

/// The commands a `fmc COMMAND ...` placeholder stands for: every one.
const EVERY: &str = "*";

/// Where a document names a flag: the document, its line number, the flag, and the commands it
/// names it for (empty: some command).
#[derive(Debug)]
struct Mention {
    doc: String,
    line: usize,
    flag: String,
    commands: Vec<String>,
}

/// Backticked spans of a line.
fn spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// Flags in a span: `--long` and `-s`, at the start or after a space, `[`, `(` or `/`.
fn flags(span: &str) -> Vec<String> {
    let b = span.as_bytes();
    let mut out = Vec::new();
    for (i, _) in span.match_indices('-') {
        if i > 0 && !matches!(b[i - 1], b' ' | b'[' | b'(' | b'/') {
            continue;
        }
        let rest = &span[i..];
        let len = if let Some(long) = rest.strip_prefix("--") {
            2 + long
                .bytes()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                .count()
        } else {
            let one = rest.as_bytes().get(1).copied();
            let next = rest.as_bytes().get(2).copied();
            if one.is_some_and(|c| c.is_ascii_alphabetic())
                && next.is_none_or(|c| !c.is_ascii_alphanumeric())
            {
                2
            } else {
                0
            }
        };
        if len > 2 || (len == 2 && !rest.starts_with("--")) {
            out.push(rest[..len].trim_end_matches('-').to_string());
        }
    }
    out
}

/// Every flag a Markdown document names, with the commands it names it for: a span that starts
/// with `fmc SUB` (or `SUB --flag`, or `cargo run --release -- SUB`) owns its flags; other flags
/// on a line belong to the commands named there as `fmc SUB`, else to the section's command (a
/// heading like "`train` options"), else to any command. Fenced code blocks and sections about
/// other tools (`skip`) are not about fmc's flags.
fn mentions(doc: &str, text: &str, subcommands: &[String], skip: &[&str]) -> Vec<Mention> {
    let is_sub = |w: &str| subcommands.iter().any(|s| s == w);
    let mut out = Vec::new();
    let mut fenced = false;
    let mut section: Vec<String> = Vec::new();
    let mut skipping = false;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') {
            skipping = skip.iter().any(|s| line.contains(s));
            section = spans(line)
                .into_iter()
                .filter(|s| is_sub(s))
                .map(String::from)
                .collect();
            continue;
        }
        if skipping {
            continue;
        }
        let mut named: Vec<String> = Vec::new();
        let mut loose: Vec<String> = Vec::new();
        for span in spans(line) {
            let mut words: Vec<&str> = span.split_whitespace().collect();
            if words.starts_with(&["cargo", "run"]) {
                // `cargo run --release -- SUB ...` runs fmc; other cargo commands are cargo's.
                match words.iter().position(|w| *w == "--") {
                    Some(i) => words = [&["fmc"], &words[i + 1..]].concat(),
                    None => continue,
                }
            }
            let owner = match words.as_slice() {
                // `fmc COMMAND --help`: a placeholder stands for every command.
                ["fmc", sub, ..] if sub.bytes().all(|c| c.is_ascii_uppercase()) => {
                    Some(EVERY.to_string())
                }
                ["fmc", sub, ..] => Some(sub.to_string()),
                ["cargo", ..] => continue,
                [sub, second, ..] if is_sub(sub) && second.starts_with('-') => {
                    Some(sub.to_string())
                }
                _ => None,
            };
            match owner {
                Some(sub) => {
                    named.push(sub.clone());
                    for f in flags(span) {
                        out.push(Mention {
                            doc: doc.into(),
                            line: n + 1,
                            flag: f,
                            commands: vec![sub.clone()],
                        });
                    }
                }
                None => loose.extend(flags(span)),
            }
        }
        let commands = if !named.is_empty() {
            named
        } else {
            section.clone()
        };
        for f in loose {
            out.push(Mention {
                doc: doc.into(),
                line: n + 1,
                flag: f,
                commands: commands.clone(),
            });
        }
    }
    out
}

/// Whether `fmc SUB` (every command when `sub` is `None`... any one of them) accepts `flag`.
fn accepts(cmd: &clap::Command, sub: &str, flag: &str) -> bool {
    let Some(sub) = cmd.find_subcommand(sub) else {
        return false;
    };
    sub.get_arguments().any(|a| match flag.strip_prefix("--") {
        Some(long) => a.get_long() == Some(long),
        None => a.get_short() == flag[1..].chars().next(),
    })
}

/// What the spec names that fmc does not have yet, each checked to be still missing (so the list
/// shrinks when it lands): language.md 9.2's sampled inputs and the import/export commands.
const NOT_YET: &[(&str, &str)] = &[];

#[test]
fn every_flag_the_readme_and_the_spec_name_is_accepted() {
    let cmd = built();
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut docs = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(root().join("README.md")).unwrap(),
    )];
    // The spec lives in `shared/spec/` beside the repository (CI lays it there too).
    let spec = root()
        .canonicalize()
        .unwrap()
        .ancestors()
        .map(|a| a.join("shared/spec/cli.md"))
        .find(|p| p.is_file())
        .expect("shared/spec/cli.md beside the repository");
    docs.push(("cli.md".into(), std::fs::read_to_string(spec).unwrap()));
    // Spec command names count as commands, so that their flags are attributed to them.
    let mut names = subcommands.clone();
    names.extend(NOT_YET.iter().map(|(c, _)| c.to_string()));
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    let mut not_yet_seen = BTreeSet::new();
    let mut count = 0;
    for (doc, text) in &docs {
        for m in mentions(doc, text, &names, &["valgrind"]) {
            count += 1;
            let ok = if m.commands.is_empty() {
                subcommands.iter().any(|s| accepts(&cmd, s, &m.flag))
            } else if m.commands == [EVERY] {
                subcommands
                    .iter()
                    .all(|s| s == "help" || accepts(&cmd, s, &m.flag))
            } else {
                m.commands.iter().all(|c| {
                    let not_yet = NOT_YET.contains(&(c.as_str(), m.flag.as_str()));
                    if not_yet {
                        not_yet_seen.insert((c.clone(), m.flag.clone()));
                    }
                    not_yet || accepts(&cmd, c, &m.flag)
                })
            };
            seen.insert(m.flag.clone());
            if !ok {
                failures.push(format!(
                    "{}:{}: `{}` for {:?}",
                    m.doc, m.line, m.flag, m.commands
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "documented flags the binary rejects:\n{}",
        failures.join("\n")
    );
    for (c, f) in NOT_YET {
        assert!(
            !accepts(&cmd, c, f),
            "`fmc {c} {f}` exists now: remove it from NOT_YET"
        );
        assert!(
            not_yet_seen.contains(&(c.to_string(), f.to_string())),
            "cli.md no longer names `{c} {f}`"
        );
    }
    // The scan itself finds what it must: the train options, the global flags and eval's.
    for f in [
        "--resume",
        "--run-dir",
        "--message-format",
        "--quiet",
        "-v",
        "--batch-size",
        "--json",
        "--threads",
        "--backend",
    ] {
        assert!(seen.contains(f), "the scan missed `{f}`: {seen:?}");
    }
    assert!(count > 40, "only {count} flag mentions found");
}

#[test]
fn the_scan_attributes_flags_to_their_commands() {
    let subs: Vec<String> = ["train", "eval", "predict", "fmt"]
        .map(String::from)
        .to_vec();
    let text = "intro `--color auto`\n\
                | `fmc eval FILE --weights W [--x X]` | prints; `--json` too |\n\
                ## `train` options\n\
                | `--steps N` | ... |\n\
                ```\nfmc eval --nope\n```\n\
                - `fmc predict` and `fmc eval` take `--batch-size N`; `fmt --check` and `-q/--quiet`\n\
                ## Other tool\nrun `--smc-check=all`\n";
    let got: Vec<(String, Vec<String>)> = mentions("t", text, &subs, &["Other tool"])
        .into_iter()
        .map(|m| (m.flag, m.commands))
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            ("--color".into(), s(&[])),
            ("--weights".into(), s(&["eval"])),
            ("--x".into(), s(&["eval"])),
            ("--json".into(), s(&["eval"])),
            ("--steps".into(), s(&["train"])),
            ("--check".into(), s(&["fmt"])),
            ("--batch-size".into(), s(&["predict", "eval", "fmt"])),
            ("-q".into(), s(&["predict", "eval", "fmt"])),
            ("--quiet".into(), s(&["predict", "eval", "fmt"])),
        ]
    );
}
