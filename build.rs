//! The manual pages and shell completions, generated at build time from the very clap
//! definitions the binaries parse with (`src/cli/`, included here and by each binary
//! with `#[path]`), so they cannot drift from `--help`:
//!
//! * `$OUT_DIR/man/`: `scoreboardctl.1` and `scoreboard-agent.8` (NAME, SYNOPSIS,
//!   DESCRIPTION, OPTIONS and, for scoreboardctl, COMMANDS from clap; then the written
//!   sections of `man/<page>.roff`), and `scoreboard-agent.toml.5`, written whole in
//!   `man/`; each dated by the latest entry of `packaging/changelog`.
//! * `$OUT_DIR/completions/{bash,zsh,fish}/`: both programs' completions (clap_complete,
//!   without what is hidden from `--help`), named as each shell looks them up
//!   (`scoreboardctl`, `_scoreboardctl`, `scoreboardctl.fish`).
//!
//! `packaging/build` takes them from the `out_dir` cargo reports for this build script
//! and copies them beside the release binaries, where the packages' assets name them.

use std::env;
use std::fs;
use std::io;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

#[allow(dead_code)]
#[path = "src/cli/scoreboardctl.rs"]
mod scoreboardctl;

#[allow(dead_code)]
#[path = "src/cli/scoreboard_agent.rs"]
mod scoreboard_agent;

fn main() -> io::Result<()> {
    for input in ["src/cli", "man", "packaging/changelog"] {
        println!("cargo::rerun-if-changed={input}");
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = format!("scoreboard-agent {}", env!("CARGO_PKG_VERSION"));
    let date = release_date(&fs::read_to_string("packaging/changelog")?);
    let title = |name: &str, section: &str, manual: &str| {
        format!(
            ".TH {} {section} \"{date}\" \"{source}\" \"{manual}\"\n",
            name.to_uppercase().replace('-', "\\-")
        )
    };

    let man = out.join("man");
    fs::create_dir_all(&man)?;
    let ctl = scoreboardctl::Cli::command();
    let agent = scoreboard_agent::Args::command();
    let mut page = title("scoreboardctl", "1", "User Commands");
    page += &generated_sections(ctl.clone())?;
    page += &fs::read_to_string("man/scoreboardctl.1.roff")?;
    fs::write(man.join("scoreboardctl.1"), page)?;
    let mut page = title("scoreboard-agent", "8", "System Administration");
    page += &generated_sections(agent.clone())?;
    page += &fs::read_to_string("man/scoreboard-agent.8.roff")?;
    fs::write(man.join("scoreboard-agent.8"), page)?;
    let mut page = title("scoreboard-agent.toml", "5", "File Formats");
    page += &fs::read_to_string("man/scoreboard-agent.toml.5.roff")?;
    fs::write(man.join("scoreboard-agent.toml.5"), page)?;

    for (shell, file) in [
        (Shell::Bash, "{}"),
        (Shell::Zsh, "_{}"),
        (Shell::Fish, "{}.fish"),
    ] {
        let dir = out.join("completions").join(shell.to_string());
        fs::create_dir_all(&dir)?;
        for command in [&ctl, &agent] {
            let mut command = visible(command);
            let name = command.get_name().to_owned();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, &name, &mut script);
            fs::write(dir.join(file.replace("{}", &name)), script)?;
        }
    }
    Ok(())
}

/// `command` without its hidden arguments and subcommands (`demo-worker`, `--root`),
/// which clap_complete would offer; the rest as it is, for completing.
fn visible(command: &clap::Command) -> clap::Command {
    // clap takes names as &'static str (without its "string" feature); a build script
    // may leak a few.
    let leak = |text: &str| -> &'static str { String::leak(text.to_owned()) };
    let mut copy = clap::Command::new(leak(command.get_name()));
    if let Some(about) = command.get_about() {
        copy = copy.about(about.clone());
    }
    if let Some(version) = command.get_version() {
        copy = copy.version(leak(version));
    }
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        copy = copy.arg(arg.clone());
    }
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        copy = copy.subcommand(visible(subcommand));
    }
    copy
}

/// NAME, SYNOPSIS, DESCRIPTION and OPTIONS as clap_mangen renders them; then, for a
/// command with subcommands, COMMANDS: each visible one's synopsis, description and
/// options (clap_mangen would point at a page per subcommand instead).
fn generated_sections(command: clap::Command) -> io::Result<String> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let man = clap_mangen::Man::new(command.clone());
    let mut roff = Vec::new();
    man.render_name_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    man.render_description_section(&mut roff)?;
    man.render_options_section(&mut roff)?;
    let visible: Vec<_> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .collect();
    if !visible.is_empty() {
        roff.extend_from_slice(b".SH COMMANDS\n");
    }
    for subcommand in visible {
        roff.extend_from_slice(format!(".SS {}\n", subcommand.get_name()).as_bytes());
        let man = clap_mangen::Man::new(subcommand.clone());
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_description_section(&mut section)?;
        man.render_options_section(&mut section)?;
        // Within COMMANDS, the subcommand's own headings are paragraphs.
        let section = String::from_utf8(section).expect("roff is UTF-8");
        for line in section.lines() {
            if line.starts_with(".SH ") {
                roff.extend_from_slice(b".PP\n");
            } else {
                roff.extend_from_slice(line.as_bytes());
                roff.push(b'\n');
            }
        }
    }
    Ok(String::from_utf8(roff).expect("roff is UTF-8"))
}

/// The date of the latest entry of a Debian-format changelog, as YYYY-MM-DD: its first
/// trailer line, ` -- Name <mail>  Sun, 29 Nov 2026 22:45:00 +0000`.
fn release_date(changelog: &str) -> String {
    let trailer = changelog
        .lines()
        .find_map(|line| line.strip_prefix(" -- "))
        .expect("packaging/changelog has an entry");
    let (_, date) = trailer.split_once("  ").expect("a trailer has a date");
    let fields: Vec<&str> = date.split_whitespace().collect();
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| fields.get(2) == Some(m))
    .expect("a trailer's date is RFC 2822");
    let day: u32 = fields[1].parse().expect("a day of the month");
    format!("{}-{:02}-{day:02}", fields[3], month + 1)
}
