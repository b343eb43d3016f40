//! `dragoman plugin new`: a plugin folder that builds and passes its fixtures as generated.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The languages a plugin can be scaffolded in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
}

const WIT: &str = include_str!("../../../../wit/translator.wit");
const OK_INPUT: &str = include_str!("../../../scaffold/common/ok.input.json");
const OK_EXPECTED: &str = include_str!("../../../scaffold/common/ok.expected.json");
const MISSING_INPUT: &str = include_str!("../../../scaffold/common/missing-id.input.json");
const MISSING_EXPECTED: &str = include_str!("../../../scaffold/common/missing-id.expected.json");

/// Writes the plugin folder `parent/name`; returns its path.
// Long on purpose: the file list of each language's template, side by side.
pub(crate) fn create(
    lang: Lang,
    name: &str,
    parent: &Path,
    sdk: Option<PathBuf>,
) -> Result<PathBuf> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        bail!(
            "plugin name `{name}` must be kebab-case: lower-case letters, digits and `-`, starting with a letter"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let sdk = match sdk {
        Some(sdk) => sdk,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the guest SDK is not at {} (give --sdk PATH)",
            sdk.display()
        )
    })?;
    // The build script embeds the fixtures with this very binary, unless told another.
    let dragoman = std::env::current_exe()
        .map(|exe| exe.display().to_string())
        .unwrap_or_else(|_| "dragoman".into());
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{dragoman}}", &dragoman)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let files: Vec<(&str, String)> = match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                fill(include_str!("../../../scaffold/rust/Cargo.toml")),
            ),
            (
                "rust-toolchain.toml",
                fill(include_str!("../../../scaffold/rust/rust-toolchain.toml")),
            ),
            (
                "src/lib.rs",
                fill(include_str!("../../../scaffold/rust/lib.rs")),
            ),
            (
                "build.sh",
                fill(include_str!("../../../scaffold/rust/build.sh")),
            ),
        ],
        Lang::Python => vec![
            (
                "app.py",
                fill(include_str!("../../../scaffold/python/app.py")),
            ),
            (
                "requirements.txt",
                fill(include_str!("../../../scaffold/python/requirements.txt")),
            ),
            (
                "build.sh",
                fill(include_str!("../../../scaffold/python/build.sh")),
            ),
            ("wit/translator.wit", WIT.to_owned()),
        ],
        Lang::Js => vec![
            ("app.js", fill(include_str!("../../../scaffold/js/app.js"))),
            (
                "package.json",
                fill(include_str!("../../../scaffold/js/package.json")),
            ),
            (
                "build.sh",
                fill(include_str!("../../../scaffold/js/build.sh")),
            ),
            ("wit/translator.wit", WIT.to_owned()),
        ],
    };
    let fixtures = [
        ("fixtures/ok.input.json", OK_INPUT),
        ("fixtures/ok.expected.json", OK_EXPECTED),
        ("fixtures/missing-id.input.json", MISSING_INPUT),
        ("fixtures/missing-id.expected.json", MISSING_EXPECTED),
    ];
    let all = files.into_iter().chain(
        fixtures
            .into_iter()
            .map(|(path, text)| (path, text.to_owned())),
    );
    for (path, text) in all {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the folder"))
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    set_executable(&dir.join("build.sh"))?;
    Ok(dir)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut permissions = std::fs::metadata(path)?.permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions)
        .with_context(|| format!("cannot make {} executable", path.display()))
}
