//! The packages as the distributions' linters judge them: `lintian -I --pedantic` on
//! the .deb and `rpmlint` on the .rpm that `packaging/build` left in the target
//! directory this test was built in.
//!
//! lintian: nothing may be reported, at any level (error, warning, info, pedantic,
//! experimental), unless it is overridden in `packaging/debian/lintian-overrides`,
//! where each override follows a comment saying why. rpmlint (with
//! `packaging/rpmlint.toml`): nothing may be reported but what [`accepted_by_rpmlint`]
//! lists, each with its reason (also in docs/packaging.md).
//!
//! Skips with a reason when a linter or a package is missing, except under `CI=true`,
//! where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use scoreboard_testkit::target_dir;

/// `None`, after saying why, when the test cannot run here; a failure under CI.
fn skip(reason: &str) -> Option<PathBuf> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the package linters must run under CI=true, but {reason}");
    }
    eprintln!("skipping: {reason}");
    None
}

/// The package in `<target>/<dir>/*.<ext>`, with `tool` to judge it.
fn package(dir: &str, ext: &str, tool: &str) -> Option<PathBuf> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        return skip(&format!("{tool} is not installed (apt-get install {tool})"));
    }
    let dir = target_dir().join(dir);
    let package = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == ext))
    });
    package.or_else(|| {
        skip(&format!(
            "{}/*.{ext} is missing: run packaging/build first",
            dir.display()
        ))
    })
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn lintian_has_nothing_to_say() {
    let Some(deb) = package("debian", "deb", "lintian") else {
        return;
    };
    let out = Command::new("lintian")
        .args([
            "-I",
            "--pedantic",
            "--show-overrides",
            "--no-tag-display-limit",
        ])
        .arg(&deb)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "lintian -I --pedantic {}:\n{said}{}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // "X: package: tag …" lines; N: lines explain the overrides (O:) before them.
    let reported: Vec<&str> = said
        .lines()
        .filter(|l| l.len() > 2 && &l[1..3] == ": " && !l.starts_with("N:"))
        .collect();
    let not_overridden: Vec<&&str> = reported.iter().filter(|l| !l.starts_with("O:")).collect();
    assert!(
        not_overridden.is_empty(),
        "lintian reports, not overridden:\n{not_overridden:#?}"
    );
    assert!(
        out.status.success(),
        "lintian failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every override says why, and is still needed (lintian would otherwise report
    // unused-override, above).
    let overrides = std::fs::read_to_string(repo("packaging/debian/lintian-overrides")).unwrap();
    let mut previous = "";
    for line in overrides.lines() {
        if line.starts_with("scoreboard-agent: ") {
            assert!(
                previous.starts_with('#') || previous.starts_with("scoreboard-agent: "),
                "the override {line:?} has no comment saying why"
            );
            let tag = line.split_whitespace().nth(1).unwrap();
            assert!(
                reported
                    .iter()
                    .any(|l| l.starts_with("O:") && l.contains(tag)),
                "{tag} is overridden but lintian does not report it"
            );
        }
        previous = line;
    }
}

/// Why rpmlint may report `level: tag detail`; `None` when it may not.
fn accepted_by_rpmlint(rpm_files: &str, level: &str, tag: &str, detail: &str) -> Option<String> {
    match (level, tag) {
        ("E", "no-signature") => Some(
            "the package is not signed: a distribution signs its builds with its own key, \
             which a build here does not have"
                .to_owned(),
        ),
        // rpmlint 2.4.0 (Debian bookworm's) records each manual page's section ("1")
        // where it means the page's name, so no binary ever has a page; fixed upstream
        // since. Accepted only while the page is really there.
        ("W", "no-manual-page-for-binary")
            if rpm_files.lines().any(|l| {
                l.starts_with("/usr/share/man/man")
                    && l.rsplit('/').next().unwrap().split('.').next() == Some(detail)
            }) =>
        {
            Some(format!(
                "rpmlint 2.4.0 never finds a binary's page; {detail}'s is in the package"
            ))
        }
        _ => None,
    }
}

#[test]
fn rpmlint_reports_only_what_a_signed_distribution_build_clears() {
    let Some(rpm) = package("rpm", "rpm", "rpmlint") else {
        return;
    };
    let out = Command::new("rpmlint")
        .arg("-c")
        .arg(repo("packaging/rpmlint.toml"))
        .arg(&rpm)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "rpmlint -c packaging/rpmlint.toml {}:\n{said}{}",
        rpm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("1 packages and 0 specfiles checked"),
        "rpmlint did not check the package"
    );
    let files = Command::new("rpm").arg("-qpl").arg(&rpm).output().unwrap();
    let files = String::from_utf8_lossy(&files.stdout);
    let mut refused = Vec::new();
    for line in said.lines() {
        // "scoreboard-agent.x86_64: W: tag detail"
        let Some((_, report)) = line.split_once(": ") else {
            continue;
        };
        let Some((level, rest)) = report.split_once(": ") else {
            continue;
        };
        if !["E", "W", "I"].contains(&level) || !line.starts_with("scoreboard-agent.") {
            continue;
        }
        let (tag, detail) = rest.split_once(' ').unwrap_or((rest, ""));
        match accepted_by_rpmlint(&files, level, tag, detail.trim()) {
            Some(why) => eprintln!("accepted {level}: {tag} {detail}: {why}"),
            None => refused.push(line),
        }
    }
    assert!(refused.is_empty(), "rpmlint reports:\n{refused:#?}");
}

/// What the packages ship as manual pages and completions (`packaging/build` copies
/// them to `<target>/release/generated/` from build.rs) offers what `--help` shows, and
/// nothing it hides.
#[test]
fn manual_pages_and_completions_follow_the_command_line() {
    let generated = target_dir().join("release/generated");
    if !generated.join("man/scoreboardctl.1.gz").exists() {
        skip(&format!(
            "{} is missing: run packaging/build first",
            generated.display()
        ));
        return;
    }
    let read = |path: &str| {
        let out = Command::new("zcat")
            .arg("-f")
            .arg(generated.join(path))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}");
        String::from_utf8(out.stdout).unwrap()
    };
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_scoreboardctl"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let page = read("man/scoreboardctl.1.gz");
    let bash = read("completions/bash/scoreboardctl");
    let zsh = read("completions/zsh/_scoreboardctl");
    let fish = read("completions/fish/scoreboardctl.fish");
    let top = help(&["--help"]);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 6, "{top}");
    for command in &commands {
        assert!(
            page.contains(&format!(".SS {command}\n")),
            "{command} not in the page"
        );
        for (shell, script) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
            assert!(
                script.contains(command),
                "{command} not in the {shell} completions"
            );
        }
        // Every option --help shows is in the page and the completions.
        let options = help(&[command, "--help"]);
        let listed = options
            .lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .flat_map(|l| {
                l.split_whitespace()
                    .take_while(|w| w.starts_with('-'))
                    .map(|w| w.trim_end_matches(','))
                    .filter(|w| w.starts_with("--"))
            });
        for option in listed {
            let roff = option.replace('-', "\\-");
            assert!(page.contains(&roff), "{command} {option} not in the page");
            let bare = option.trim_start_matches('-');
            assert!(
                fish.contains(&format!("-l {bare}")),
                "{command} {option} not in fish's"
            );
        }
    }
    for hidden in ["demo-worker", "--root"] {
        for (what, text) in [
            ("page", &page),
            ("bash", &bash),
            ("zsh", &zsh),
            ("fish", &fish),
        ] {
            let text = text.replace("\\-", "-");
            assert!(!text.contains(hidden), "{hidden} in the {what}");
        }
    }
    for path in [
        "man/scoreboard-agent.8.gz",
        "man/scoreboard-agent.toml.5.gz",
        "completions/bash/scoreboard-agent",
        "completions/zsh/_scoreboard-agent",
        "completions/fish/scoreboard-agent.fish",
    ] {
        assert!(read(path).contains("check"), "{path}");
    }
}
