//! The Python package (`python/`) and this crate are one version.

#[test]
fn the_python_package_has_the_crates_version() {
    let init = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../python/src/scoreboard/__init__.py");
    let text = std::fs::read_to_string(&init).unwrap();
    let version = text
        .lines()
        .find_map(|line| line.strip_prefix("__version__ = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no __version__ in {}", init.display()));
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}
