//! `dragoman plugin new`: a plugin folder that builds and passes its fixtures as generated.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The languages a plugin can be scaffolded in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Rust, with the guest SDK `dragoman-guest`.
    #[value(alias = "rs")]
    Rust,
    /// Python, with componentize-py and `dragoman_guest.py`.
    #[value(alias = "py")]
    Python,
    /// JavaScript, with componentize-js and `dragoman.js`.
    #[value(alias = "javascript")]
    Js,
}

impl Lang {
    /// The language's name, its source file, and what its SDK is, for the folder's README.
    fn readme(self) -> [(&'static str, &'static str); 3] {
        match self {
            Self::Rust => [
                ("language", "Rust"),
                ("source", "src/lib.rs"),
                (
                    "sdk_note",
                    "it depends on the guest SDK `dragoman-guest` by a path relative to this \
                     folder (`Cargo.toml`): keep the two side by side, or fix the path.",
                ),
            ],
            Self::Python => [
                ("language", "Python"),
                ("source", "app.py"),
                (
                    "sdk_note",
                    "`dragoman_guest.py` is the SDK (`VERSION` says which), copied here so the \
                     folder builds on its own; `wit/` is the contract.",
                ),
            ],
            Self::Js => [
                ("language", "JavaScript"),
                ("source", "app.js"),
                (
                    "sdk_note",
                    "`dragoman.js` is the SDK (`VERSION` says which), copied here so the folder \
                     builds on its own; `wit/` is the contract.",
                ),
            ],
        }
    }
}

const WIT: &str = include_str!("../../../../wit/translator.wit");
const OK_INPUT: &str = include_str!("../../../scaffold/common/ok.input.json");
const OK_EXPECTED: &str = include_str!("../../../scaffold/common/ok.expected.json");
const MISSING_INPUT: &str = include_str!("../../../scaffold/common/missing-id.input.json");
const MISSING_EXPECTED: &str = include_str!("../../../scaffold/common/missing-id.expected.json");
const README: &str = include_str!("../../../scaffold/common/README.md");
const PYTHON_SDK: &str = include_str!("../../../../guest-sdk/python/dragoman_guest.py");
const JS_SDK: &str = include_str!("../../../../guest-sdk/js/dragoman.js");

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
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    // Relative, so the folder and the SDK can move together (a clone of a repository that
    // holds both builds as it is).
    let sdk = relative(&parent.canonicalize()?.join(name), &sdk);
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
    let mut readme = README.to_owned();
    for (key, value) in lang.readme() {
        readme = readme.replace(&format!("{{{{{key}}}}}"), value);
    }
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
            (
                ".gitignore",
                include_str!("../../../scaffold/rust/gitignore").into(),
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
            ("dragoman_guest.py", PYTHON_SDK.to_owned()),
            (
                ".gitignore",
                include_str!("../../../scaffold/python/gitignore").into(),
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
            ("dragoman.js", JS_SDK.to_owned()),
            (
                ".gitignore",
                include_str!("../../../scaffold/js/gitignore").into(),
            ),
            ("wit/translator.wit", WIT.to_owned()),
        ],
    };
    let shared = [
        ("README.md", fill(&readme)),
        ("fixtures/ok.input.json", OK_INPUT.to_owned()),
        ("fixtures/ok.expected.json", OK_EXPECTED.to_owned()),
        ("fixtures/missing-id.input.json", MISSING_INPUT.to_owned()),
        (
            "fixtures/missing-id.expected.json",
            MISSING_EXPECTED.to_owned(),
        ),
    ];
    let all = files.into_iter().chain(shared);
    for (path, text) in all {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the folder"))
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    set_executable(&dir.join("build.sh"))?;
    Ok(dir)
}

/// `to` as a path relative to the directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf =
        std::iter::repeat_n(std::path::Component::ParentDir, from.len() - shared).collect();
    path.extend(&to[shared..]);
    path
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut permissions = std::fs::metadata(path)?.permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions)
        .with_context(|| format!("cannot make {} executable", path.display()))
}
