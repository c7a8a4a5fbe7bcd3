use super::*;

fn target() -> (tempfile::TempDir, EnableTarget) {
    let tmp = tempfile::tempdir().unwrap();
    let target = EnableTarget {
        root: tmp.path().to_owned(),
        apply: false,
    };
    (tmp, target)
}

fn read(root: &Path, relative: &str) -> String {
    std::fs::read_to_string(root.join(relative)).unwrap()
}

/// Every file under `root`, relative.
fn written(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn health_options_are_written_as_keys_and_checked_before_anything_is_written() {
    let (tmp, target) = target();
    let health = HealthOptions {
        stuck_after: Some("1m".into()),
        wedged_after: Some("2m".into()),
        kill_stuck_after: Some("10m".into()),
        kill_signal: Some("QUIT".into()),
        kill_grace: Some("30s".into()),
        actions: Some("report".into()),
    };
    enable(&target, "demo", None, None, &health, false).unwrap();
    let text = read(tmp.path(), "etc/scoreboard/services.d/demo.toml");
    assert_eq!(
        text,
        format!(
            "{MARK}\nunit = \"demo.service\"\nstuck_after = \"1m\"\nwedged_after = \"2m\"\n\
             kill_stuck_after = \"10m\"\nkill_signal = \"QUIT\"\nkill_grace = \"30s\"\n\
             actions = \"report\"\n"
        )
    );
    let service = crate::config::parse_service(&text, Path::new("demo.toml")).unwrap();
    assert_eq!(
        service.health_actions.kill_signal,
        crate::config::KillSignal::Quit
    );

    let (tmp, target) = self::target();
    for bad in [
        HealthOptions {
            kill_stuck_after: Some("10m".into()),
            ..HealthOptions::default()
        },
        HealthOptions {
            kill_signal: Some("STOP".into()),
            ..HealthOptions::default()
        },
        HealthOptions {
            wedged_after: Some("soon".into()),
            ..HealthOptions::default()
        },
    ] {
        let message = format!(
            "{:#}",
            enable(&target, "demo", None, None, &bad, false).unwrap_err()
        );
        assert!(message.contains("the options given"), "{message}");
    }
    assert!(written(tmp.path()).is_empty(), "{:?}", written(tmp.path()));
}

#[test]
fn enable_writes_three_files_and_is_idempotent() {
    let (tmp, target) = target();
    let report = enable(
        &target,
        "demo",
        Some("www-data"),
        None,
        &HealthOptions::default(),
        false,
    )
    .unwrap();
    assert_eq!(
        read(tmp.path(), "etc/tmpfiles.d/scoreboard-demo.conf"),
        format!(
            "{MARK}\n\
             d /run/demo/scoreboard 0770 www-data www-data -\n\
             a+ /run/demo/scoreboard - - - - user:scoreboard:rwx,default:user:scoreboard:r\n"
        )
    );
    assert_eq!(
        read(
            tmp.path(),
            "etc/systemd/system/demo.service.d/50-scoreboard.conf"
        ),
        format!(
            "{MARK}\n[Service]\n\
             # RuntimeDirectory= is made anew at each start: give the scoreboard back its ACL.\n\
             ExecStartPre=-+/usr/bin/systemd-tmpfiles --create /etc/tmpfiles.d/scoreboard-demo.conf\n\
             NotifyAccess=main\n"
        )
    );
    assert_eq!(
        read(tmp.path(), "etc/scoreboard/services.d/demo.toml"),
        format!("{MARK}\nunit = \"demo.service\"\n")
    );
    assert!(
        report.contains("would run systemctl daemon-reload"),
        "{report}"
    );

    let again = enable(
        &target,
        "demo.service",
        Some("www-data"),
        None,
        &HealthOptions::default(),
        false,
    )
    .unwrap();
    assert_eq!(again.matches("unchanged ").count(), 3, "{again}");

    // The agent's configuration it wrote is one the agent accepts.
    let agent = tmp.path().join("etc/scoreboard/agent.toml");
    std::fs::write(&agent, "").unwrap();
    let config = crate::config::Config::load(&agent).unwrap();
    assert_eq!(
        config.services[0].directory,
        Path::new("/run/demo/scoreboard")
    );
}

#[test]
fn a_unit_with_its_own_notify_access_keeps_it_and_still_gets_the_exec_start_pre() {
    let (tmp, target) = target();
    let dropin = "etc/systemd/system/demo.service.d/50-scoreboard.conf";
    let own = UnitSettings {
        notify_access: NotifyAccess::All,
        ..UnitSettings::default()
    };
    let report = enable_with(
        &target,
        "demo.service",
        None,
        None,
        &own,
        &HealthOptions::default(),
    )
    .unwrap();
    assert!(
        report.contains("kept demo.service's own NotifyAccess=all"),
        "{report}"
    );
    let text = read(tmp.path(), dropin);
    assert!(text.contains("\nExecStartPre=-+/usr/bin/systemd-tmpfiles --create "));
    assert!(!text.contains("NotifyAccess"), "{text}");
    let again = enable_with(
        &target,
        "demo.service",
        None,
        None,
        &own,
        &HealthOptions::default(),
    )
    .unwrap();
    assert_eq!(again.matches("unchanged ").count(), 3, "{again}");

    // A unit without one gets ours, and keeps it when systemctl show then reports
    // it as the unit's.
    let (tmp, target) = self::target();
    enable_with(
        &target,
        "demo.service",
        None,
        None,
        &UnitSettings::default(),
        &HealthOptions::default(),
    )
    .unwrap();
    assert!(read(tmp.path(), dropin).ends_with("\nNotifyAccess=main\n"));
    let ours = UnitSettings {
        notify_access: NotifyAccess::Main,
        ..UnitSettings::default()
    };
    let again = enable_with(
        &target,
        "demo.service",
        None,
        None,
        &ours,
        &HealthOptions::default(),
    )
    .unwrap();
    assert_eq!(again.matches("unchanged ").count(), 3, "{again}");
    assert!(!again.contains("kept"), "{again}");
}

#[test]
fn without_group_the_users_primary_group_owns_the_scoreboard() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    assert_eq!(
        primary_group(root.path(), "nobody").as_deref(),
        Some("65534")
    );
    assert_eq!(
        primary_group(root.path(), "65534").as_deref(),
        Some("65534")
    );
    assert_eq!(primary_group(root.path(), "www"), None);
}

#[test]
fn the_units_user_and_group_are_the_default_owner() {
    let (tmp, target) = target();
    let facts = UnitSettings {
        user: "web".into(),
        group: "www".into(),
        ..UnitSettings::default()
    };
    enable_with(
        &target,
        "demo.service",
        None,
        None,
        &facts,
        &HealthOptions::default(),
    )
    .unwrap();
    assert!(
        read(tmp.path(), "etc/tmpfiles.d/scoreboard-demo.conf")
            .contains("\nd /run/demo/scoreboard 0770 web www -\n")
    );
    let only_user = UnitSettings {
        user: "1001".into(),
        ..UnitSettings::default()
    };
    enable_with(
        &target,
        "demo.service",
        None,
        None,
        &only_user,
        &HealthOptions::default(),
    )
    .unwrap();
    assert!(
        read(tmp.path(), "etc/tmpfiles.d/scoreboard-demo.conf")
            .contains("\nd /run/demo/scoreboard 0770 1001 1001 -\n")
    );
    enable_with(
        &target,
        "demo.service",
        None,
        None,
        &UnitSettings::default(),
        &HealthOptions::default(),
    )
    .unwrap();
    assert!(
        read(tmp.path(), "etc/tmpfiles.d/scoreboard-demo.conf")
            .contains("\nd /run/demo/scoreboard 0770 root root -\n")
    );
}

#[test]
fn users_and_groups_are_names_or_ids() {
    for good in [
        "www-data",
        "_apt",
        "nobody",
        "systemd-network",
        "WebApp",
        "first.last",
        "machine$",
        "a",
        &"a".repeat(32),
        &format!("{}$", "a".repeat(31)),
        "0",
        "1000",
        "65534",
        "4294967294",
    ] {
        assert_eq!(check_account("--user", good), Ok(()), "{good:?}");
    }
    for bad in [
        "",
        "-",
        "-x",
        ".x",
        "1abc",
        "$",
        "a$b",
        "a b",
        "a\tb",
        "x -\nR /",
        "a\n",
        "a\\b",
        "a%b",
        "a:b",
        "a/b",
        "a,b",
        "a\"b",
        "é",
        &"a".repeat(33),
        &format!("{}$", "a".repeat(32)),
        "4294967295",
        "65535",
        "4294967296",
        "99999999999999999999",
        "+1",
        "-1",
    ] {
        let message = check_account("--user", bad).unwrap_err();
        assert!(
            message.starts_with(&format!("--user {bad:?} is not a "))
                && message.contains("at most 32 bytes"),
            "{message}"
        );
    }
}

#[test]
fn a_user_or_group_that_is_not_one_is_refused_before_anything_is_written() {
    let (tmp, target) = target();
    let message = enable(
        &target,
        "demo",
        Some("x -\nR /"),
        None,
        &HealthOptions::default(),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("--user \"x -\\nR /\""), "{message}");
    let message = enable(
        &target,
        "demo",
        None,
        Some("g g"),
        &HealthOptions::default(),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("--group \"g g\""), "{message}");
    // What systemctl show said is held to the same rule.
    let facts = UnitSettings {
        user: "web\nR /".into(),
        ..UnitSettings::default()
    };
    let message = enable_with(
        &target,
        "demo.service",
        None,
        None,
        &facts,
        &HealthOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("User= of demo.service") && message.contains("pass --user"),
        "{message}"
    );
    let facts = UnitSettings {
        group: "%".into(),
        ..UnitSettings::default()
    };
    let message = enable_with(
        &target,
        "demo.service",
        None,
        None,
        &facts,
        &HealthOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("Group= of demo.service"), "{message}");
    assert_eq!(written(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_unit_whose_scoreboard_would_be_a_system_directory_is_refused() {
    let (tmp, target) = target();
    for unit in ["systemd", "user"] {
        let message = enable(&target, unit, None, None, &HealthOptions::default(), false)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("is inside /run/{unit},")),
            "{message}"
        );
    }
    assert_eq!(written(tmp.path()), Vec::<String>::new());
}

#[test]
fn paths_are_quoted_for_systemd_or_refused() {
    assert_eq!(
        quote_path("/run/web@1:x-y_z.v/sb").unwrap(),
        "/run/web@1:x-y_z.v/sb"
    );
    assert_eq!(quote_path("/run/a\\x2db%n").unwrap(), "/run/a\\\\x2db%%n");
    assert_eq!(
        quote_glob("/run/a\\x2db%n").unwrap(),
        "/run/a\\\\\\\\x2db%%n"
    );
    for bad in [
        " ", "\n", "\r", "\t", "\0", "\"", "'", "$", ";", "*", "?", "[", "]", "{", "}", "#", "é",
        "\u{2028}",
    ] {
        let path = format!("/run/a{bad}b");
        let message = quote_path(&path).unwrap_err();
        assert!(
            message.starts_with(&format!("{path:?} holds ")),
            "{message}"
        );
        assert!(quote_glob(&path).is_err());
    }
}

#[test]
fn the_tmpfiles_file_has_exactly_its_lines_whatever_the_input() {
    assert_eq!(
        tmpfiles_text("web", "www-data", "www").unwrap(),
        format!(
            "{MARK}\n\
             d /run/web/scoreboard 0770 www-data www -\n\
             a+ /run/web/scoreboard - - - - user:scoreboard:rwx,default:user:scoreboard:r\n"
        )
    );
    let hostile: Vec<String> = (0..=0x7f_u8)
        .map(|b| char::from(b).to_string())
        .chain(["é", "\u{85}", "\u{2028}", " -\nR /", "\\n", "%n"].map(String::from))
        .collect();
    let mut accepted = 0;
    for piece in &hostile {
        for (name, user) in [
            (format!("we{piece}b"), "u".to_owned()),
            ("web".to_owned(), format!("u{piece}")),
        ] {
            let Ok(text) = tmpfiles_text(&name, &user, "g") else {
                continue;
            };
            accepted += 1;
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 3, "{text:?}");
            assert_eq!(lines[0], MARK);
            let d: Vec<&str> = lines[1].split_whitespace().collect();
            assert_eq!(d.len(), 6, "{text:?}");
            assert_eq!(
                (d[0], d[2], d[3], d[4], d[5]),
                ("d", "0770", &*user, "g", "-")
            );
            let a: Vec<&str> = lines[2].split_whitespace().collect();
            assert_eq!(a.len(), 7, "{text:?}");
            assert_eq!(a[0], "a+");
            assert_eq!(
                a[6], "user:scoreboard:rwx,default:user:scoreboard:r",
                "{text:?}"
            );
        }
    }
    assert!(accepted > 60, "{accepted}");
}

#[test]
fn a_backslash_in_a_unit_name_is_written_so_that_everything_reads_it_back() {
    let (tmp, target) = target();
    // systemd-escape's spelling of "web-pool" in an instance name.
    let unit = "web\\x2dpool.service";
    enable(
        &target,
        unit,
        Some("web"),
        None,
        &HealthOptions::default(),
        false,
    )
    .unwrap();
    let name = "web\\x2dpool";
    assert_eq!(
        read(
            tmp.path(),
            &format!("etc/tmpfiles.d/scoreboard-{name}.conf")
        ),
        format!(
            "{MARK}\n\
             d /run/web\\\\x2dpool/scoreboard 0770 web web -\n\
             a+ /run/web\\\\\\\\x2dpool/scoreboard - - - - user:scoreboard:rwx,default:user:scoreboard:r\n"
        )
    );
    let dropin = read(
        tmp.path(),
        &format!("etc/systemd/system/{unit}.d/50-scoreboard.conf"),
    );
    assert!(
        dropin.contains(
            "\nExecStartPre=-+/usr/bin/systemd-tmpfiles --create /etc/tmpfiles.d/scoreboard-web\\\\x2dpool.conf\n"
        ),
        "{dropin}"
    );
    // The agent reads the configuration back as the same unit.
    let agent = tmp.path().join("etc/scoreboard/agent.toml");
    std::fs::write(&agent, "").unwrap();
    let config = crate::config::Config::load(&agent).unwrap();
    assert_eq!(config.services[0].unit, unit);
    assert_eq!(
        config.services[0].directory,
        Path::new("/run/web\\x2dpool/scoreboard")
    );
    assert_eq!(
        enable(
            &target,
            unit,
            Some("web"),
            None,
            &HealthOptions::default(),
            false
        )
        .unwrap()
        .matches("unchanged ")
        .count(),
        3
    );
}

/// The quoting as systemd-tmpfiles itself reads it, when it is installed: the
/// directory made has the name meant, and the ACL line (a glob) finds it.
#[test]
fn systemd_tmpfiles_reads_the_quoted_paths_as_meant() {
    // Under CI=true (as root, where systemd-tmpfiles is installed) it must run: a
    // missing systemd-tmpfiles is then a failure, not a pass that checked nothing.
    if !scoreboard_testkit::as_root_or_skip("systemd-tmpfiles reading the quoted paths") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let directory = tmp.path().join("web\\x2dpool%n");
    let directory = directory.to_str().unwrap();
    let path = quote_path(directory).expect("a temporary directory is quotable");
    let glob = quote_glob(directory).expect("a temporary directory is quotable");
    let conf = tmp.path().join("test.conf");
    std::fs::write(
        &conf,
        format!("d {path} 0700 - - -\na+ {glob} - - - - user:65534:r\n"),
    )
    .unwrap();
    let output = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(&conf)
        .output()
        .expect("running systemd-tmpfiles");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(Path::new(directory).is_dir(), "{stderr}");
    let mut made: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    made.sort();
    assert_eq!(made, ["test.conf", "web\\x2dpool%n"], "{stderr}");
    if stderr.contains("Operation not supported") {
        eprintln!("ACL not checked: the filesystem has none: {stderr}");
        return;
    }
    assert!(output.status.success(), "{stderr}");
    let mut names = vec![0; 1024];
    let len = rustix::fs::listxattr(directory, &mut names).unwrap();
    let names = String::from_utf8_lossy(&names[..len]);
    assert!(names.contains("system.posix_acl_access"), "{names:?}");
}

#[test]
fn disable_removes_exactly_what_enable_wrote() {
    let (tmp, target) = target();
    let etc = tmp.path().join("etc");
    let neighbour = etc.join("systemd/system/demo.service.d/10-admin.conf");
    std::fs::create_dir_all(neighbour.parent().unwrap()).unwrap();
    std::fs::write(&neighbour, "[Service]\nNice=5\n").unwrap();
    enable(
        &target,
        "demo",
        None,
        None,
        &HealthOptions::default(),
        false,
    )
    .unwrap();
    let report = disable(&target, "demo").unwrap();
    assert_eq!(report.matches("removed ").count(), 3, "{report}");
    assert!(neighbour.exists());
    assert!(!etc.join("tmpfiles.d/scoreboard-demo.conf").exists());
    assert!(!etc.join("scoreboard/services.d/demo.toml").exists());
    // Nothing left to remove the second time.
    assert_eq!(
        disable(&target, "demo")
            .unwrap()
            .matches("removed ")
            .count(),
        0
    );
}

#[test]
fn files_written_by_someone_else_are_never_overwritten_or_removed() {
    let (tmp, target) = target();
    let mine = tmp.path().join("etc/scoreboard/services.d/demo.toml");
    std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
    std::fs::write(&mine, "unit = \"demo\"\nstuck_after = \"1m\"\n").unwrap();
    let error = enable(
        &target,
        "demo",
        None,
        None,
        &HealthOptions::default(),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("not written by scoreboardctl enable"),
        "{error}"
    );
    assert!(
        !tmp.path()
            .join("etc/tmpfiles.d/scoreboard-demo.conf")
            .exists(),
        "all or nothing"
    );
    disable(&target, "demo").unwrap();
    assert!(mine.exists());
}

#[test]
fn units_that_are_not_services_are_refused() {
    let (_tmp, target) = target();
    assert!(
        enable(
            &target,
            "demo.socket",
            None,
            None,
            &HealthOptions::default(),
            false
        )
        .unwrap_err()
        .to_string()
        .contains("not a service")
    );
}

#[test]
fn kill_stuck_after_says_the_command_or_grants_with_the_flag() {
    let (tmp, target) = target();
    let health = HealthOptions {
        stuck_after: Some("1m".into()),
        kill_stuck_after: Some("2m".into()),
        ..HealthOptions::default()
    };
    let report = enable(&target, "demo", None, None, &health, false).unwrap();
    assert!(report.contains("run: scoreboardctl grant-kill"), "{report}");
    let dropin = "etc/systemd/system/scoreboard-agent.service.d/50-kill.conf";
    assert!(!tmp.path().join(dropin).exists());
    // Without kill_stuck_after nothing is said.
    let (_tmp, quiet) = self::target();
    let report = enable(&quiet, "demo", None, None, &HealthOptions::default(), false).unwrap();
    assert!(!report.contains("grant-kill"), "{report}");

    let report = enable(&target, "demo", None, None, &health, true).unwrap();
    assert!(
        report.contains("granted: lets scoreboard-agent send"),
        "{report}"
    );
    assert!(
        report.contains("would run systemctl try-restart scoreboard-agent.service"),
        "{report}"
    );
    let text = read(tmp.path(), dropin);
    assert_eq!(text, kill_dropin_text());
    for line in [
        "AmbientCapabilities=CAP_SYS_ADMIN CAP_KILL",
        "CapabilityBoundingSet=CAP_SYS_ADMIN CAP_KILL",
        "ProtectProc=default",
        "ProcSubset=all",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }
    // Granted once, nothing more to say.
    let report = enable(&target, "demo", None, None, &health, false).unwrap();
    assert!(!report.contains("grant-kill"), "{report}");
}

#[test]
fn grant_and_revoke_kill_touch_only_their_own_drop_in() {
    let (tmp, target) = target();
    let dropin = tmp
        .path()
        .join("etc/systemd/system/scoreboard-agent.service.d/50-kill.conf");
    grant_kill(&target).unwrap();
    assert!(dropin.exists());
    assert!(grant_kill(&target).unwrap().contains("unchanged "));
    let report = revoke_kill(&target).unwrap();
    assert!(report.contains("removed "), "{report}");
    assert!(!dropin.exists());
    std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    std::fs::write(&dropin, "[Service]\nAmbientCapabilities=CAP_KILL\n").unwrap();
    assert!(grant_kill(&target).is_err());
    assert!(revoke_kill(&target).unwrap().contains("left "));
    assert!(dropin.exists());
}
