//! `hush completions` and `hush man`: generated from the same clap definition the CLI parses,
//! so they list every command and flag there is.

use std::process::Command;

fn hush(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn completions_for_each_shell_know_the_commands_and_their_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = hush(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["migrate", "submit", "on-bad-lines", "port-base"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = hush(&["completions", "tcsh"]);
    assert!(!out.status.success(), "an unknown shell is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn man_writes_a_page_for_hush_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("man1");
    let out = hush(&["man", target.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    for page in [
        "hush.1",
        "hush-up.1",
        "hush-bulk-submit.1",
        "hush-migrate.1",
    ] {
        assert!(target.join(page).is_file(), "{page} missing");
    }
    let submit = std::fs::read_to_string(target.join("hush-bulk-submit.1")).unwrap();
    assert!(
        submit.starts_with(".ie") || submit.contains(".TH"),
        "roff: {submit}"
    );
    assert!(submit.contains("on\\-bad\\-lines"), "{submit}");
}
