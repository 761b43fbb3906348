//! `fmc` on a pseudo-terminal, as a user types it: every command that prints to a terminal
//! finishes within a time bound. Redirected output never exercises the live progress bar, whose
//! drawing thread once deadlocked against a process-wide stderr lock after `Epoch 1/20`.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a run on the terminal printed (stdout and stderr interleaved, as on a screen).
struct Screen {
    code: i32,
    text: String,
    seconds: f64,
}

/// Opens a pseudo-terminal of 24 rows and 100 columns: (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let mut master = -1;
    let mut slave = -1;
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two file descriptors it opened; we own them from here on.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are open and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Runs `fmc ARGS` in `dir` with stdin, stdout and stderr on a terminal; fails the test if it
/// has not exited within `limit` (printing what the screen showed).
fn on_terminal(dir: &Path, args: &[&str], limit: Duration) -> Screen {
    let (master, slave) = openpty();
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fmc"))
        .args(args)
        .current_dir(dir)
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("spawn fmc");
    // The slave ends live in the child only (Command dropped its copies), so reading the master
    // ends with EIO once the child exits. The reader drains the terminal so the child never
    // blocks on a full buffer.
    let reader = std::thread::spawn(move || {
        let mut file = std::fs::File::from(master);
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        bytes
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let text = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
            let tail: String = text
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "`fmc {}` on a terminal did not finish within {limit:?}; the screen ended with:\n{tail}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    Screen {
        code: status.code().unwrap_or(-1),
        text,
        seconds,
    }
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-pty-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Generous: the whole README run takes about 2 s in release on one free core.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_readme_first_command_finishes_on_a_terminal_with_a_live_bar() {
    let dir = tmp("train");
    let screen = on_terminal(&dir, &["train", &example("digits_mlp.fm")], LIMIT);
    assert_eq!(screen.code, 0, "{}", screen.text);
    eprintln!(
        "fmc train examples/digits_mlp.fm on a pty: {:.1} s",
        screen.seconds
    );
    let t = &screen.text;
    // Every epoch starts, and the bar redraws in place (carriage return / erase line) before
    // the final line of the epoch.
    assert!(t.contains("Epoch 1/20") && t.contains("Epoch 20/20"), "{t}");
    assert!(
        t.contains("\x1b[2K") || t.contains('\r'),
        "no live redraw:\n{t}"
    );
    assert!(t.contains("45/45 ━━━━━━━━━━━━━━━━━━━━"), "{t}");
    assert!(t.contains("test_loss: "), "{t}");
    assert!(t.contains("run directory: runs/digits_mlp/1"), "{t}");
    assert!(dir.join("runs/digits_mlp/1/weights.safetensors").is_file());
}

#[test]
fn every_other_command_finishes_on_a_terminal() {
    let dir = tmp("others");
    let run = dir.join("run");
    let fm = example("digits_mlp.fm");
    let run_s = run.to_str().unwrap();
    let train = on_terminal(
        &dir,
        &["train", &fm, "--steps", "60", "--run-dir", run_s],
        LIMIT,
    );
    assert_eq!(train.code, 0, "{}", train.text);
    // 60 steps of 45 per epoch: a finished epoch and a partial one, both drawn.
    assert!(train.text.contains("Epoch 2/"), "{}", train.text);
    let weights = run.join("weights.safetensors");
    let w = weights.to_str().unwrap();
    let images = example("data/digits-images-idx3-ubyte");
    let labels = example("data/digits-labels-idx1-ubyte");
    let commands: Vec<Vec<&str>> = vec![
        vec!["eval", &fm, "--weights", w],
        vec!["eval", &fm, "--weights", w, "--x", &images, "--y", &labels],
        vec![
            "predict",
            &fm,
            "--weights",
            w,
            "--input",
            &images,
            "-o",
            "p.npy",
        ],
        vec!["plot", run_s],
        vec!["check", &fm],
        vec!["summary", &fm],
        vec!["compile", &fm, "--emit", "ir"],
        vec!["explain", "E0203"],
        vec!["--help"],
    ];
    for args in commands {
        let screen = on_terminal(&dir, &args, LIMIT);
        assert_eq!(screen.code, 0, "fmc {}:\n{}", args.join(" "), screen.text);
    }
    // Resumed inside epoch 2: the bar starts part-way and the run goes on to epoch 20.
    let resumed = on_terminal(&dir, &["train", &fm, "--resume", run_s], LIMIT);
    assert_eq!(resumed.code, 0, "{}", resumed.text);
    assert!(
        resumed.text.contains("Epoch 2/20") && resumed.text.contains("Epoch 20/20"),
        "{}",
        resumed.text
    );
    assert!(!resumed.text.contains("Epoch 1/20"), "{}", resumed.text);
    // eval on a terminal prints its line like anywhere else.
    let eval = on_terminal(&dir, &["eval", &fm, "--weights", w], LIMIT);
    assert!(eval.text.contains("loss: "), "{}", eval.text);
    assert!(dir.join("p.npy").is_file());
}

#[test]
fn a_failing_train_on_a_terminal_exits_1_promptly() {
    let dir = tmp("fail");
    std::fs::write(
        dir.join("bad.fm"),
        "model m {\n  input x: f32[4]\n  output y = x -> Nope(3)\n}\n",
    )
    .unwrap();
    let screen = on_terminal(&dir, &["train", "bad.fm"], LIMIT);
    assert_eq!(screen.code, 1, "{}", screen.text);
    assert!(screen.text.contains("bad.fm"), "{}", screen.text);
}
