//! Finding the crate a worker runs: `<crate>[::path::to::app]`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where the target's `kafkaesk` dependency comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaeskSource {
    /// A path dependency: the directory of its Cargo.toml.
    Path(PathBuf),
    /// A registry version.
    Registry(String),
}

/// A resolved target crate.
#[derive(Debug, Clone)]
pub struct Target {
    /// Package name, as in its Cargo.toml.
    pub package: String,
    /// Package version, as in its Cargo.toml.
    pub version: String,
    /// Directory of its Cargo.toml.
    pub manifest_dir: PathBuf,
    /// `path::to::app` after the crate, if given.
    pub app_path: Option<String>,
    /// Root of the workspace the crate belongs to.
    pub workspace_root: PathBuf,
    /// That workspace's target directory.
    pub target_dir: PathBuf,
    /// The kafkaesk the crate depends on.
    pub kafkaesk: KafkaeskSource,
}

/// Splits `examples/service::app` into the crate part and the item path.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once("::") {
        Some((krate, path)) => (krate, Some(path)),
        None => (spec, None),
    }
}

/// Checks an item path such as `api::app`: Rust identifiers separated by `::`.
fn validate_app_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.split("::").all(|segment| {
            let mut chars = segment.chars();
            chars
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{path}` is not a Rust path; name a public function like `my_crate::api::app`"
        ))
    }
}

fn cargo_metadata(args: &[&str], cwd: Option<&Path>) -> Result<Value, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .arg("metadata")
        .arg("--format-version=1")
        .args(args)
        .env_remove(kafkaesk::worker::KAFKA_SETTINGS_ENV);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let output = command
        .output()
        .map_err(|err| format!("cannot run cargo ({err}); is the Rust toolchain installed?"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or_else(|| stderr.trim());
        return Err(format!("cargo metadata failed: {reason}"));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|err| format!("cargo metadata gave unreadable output: {err}"))
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The manifest of the crate part: a directory with a Cargo.toml, a
/// Cargo.toml itself, or a package of the workspace around the current directory.
fn find_manifest(krate: &str) -> Result<PathBuf, String> {
    let path = Path::new(krate);
    if path.join("Cargo.toml").is_file() {
        return Ok(path.join("Cargo.toml"));
    }
    if path.file_name().is_some_and(|n| n == "Cargo.toml") && path.is_file() {
        return Ok(path.to_path_buf());
    }
    let looks_like_path = krate.contains('/') || krate.starts_with('.');
    let workspace = cargo_metadata(&["--no-deps"], None);
    if let (false, Ok(metadata)) = (looks_like_path, &workspace) {
        let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
        let wanted = krate.replace('-', "_");
        if let Some(package) = packages
            .iter()
            .find(|p| str_field(p, "name").is_some_and(|name| name.replace('-', "_") == wanted))
        {
            if let Some(manifest) = str_field(package, "manifest_path") {
                return Ok(PathBuf::from(manifest));
            }
        }
        let names: Vec<&str> = packages
            .iter()
            .filter_map(|p| str_field(p, "name"))
            .collect();
        return Err(format!(
            "no crate `{krate}`: give a directory with a Cargo.toml, or one of this workspace's \
             packages ({})",
            names.join(", ")
        ));
    }
    Err(format!(
        "no crate at `{krate}`: give a directory with a Cargo.toml, or the name of a package \
         of the workspace you run kafkaesk in"
    ))
}

/// Resolves `<crate>[::path::to::app]`.
pub fn resolve(spec: &str) -> Result<Target, String> {
    let (krate, app_path) = split_spec(spec);
    if let Some(path) = app_path {
        validate_app_path(path)?;
    }
    let manifest = find_manifest(krate)?;
    let manifest = manifest
        .canonicalize()
        .map_err(|err| format!("cannot read `{}`: {err}", manifest.display()))?;
    let manifest_text = manifest.to_string_lossy().into_owned();
    let metadata = cargo_metadata(&["--manifest-path", &manifest_text], None)?;

    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let package = packages
        .iter()
        .find(|p| str_field(p, "manifest_path") == Some(manifest_text.as_str()))
        .ok_or_else(|| format!("cargo does not list the package of `{manifest_text}`"))?;
    let name = str_field(package, "name").unwrap_or(krate).to_owned();
    let has_lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "lib" || k == "rlib"))
        })
        .is_some();
    if !has_lib {
        return Err(format!(
            "`{name}` has no library target; kafkaesk runs the handlers a library \
                 registers (add a src/lib.rs), or run your own binary that calls \
                 kafkaesk::worker::main()"
        ));
    }

    let package_id = str_field(package, "id").unwrap_or_default();
    let kafkaesk = kafkaesk_dependency(&metadata, &packages, package_id).ok_or_else(|| {
        format!("`{name}` does not depend on kafkaesk; add `kafkaesk` to its [dependencies]")
    })?;

    let workspace_root = PathBuf::from(str_field(&metadata, "workspace_root").unwrap_or("."));
    let target_dir = PathBuf::from(
        str_field(&metadata, "target_directory")
            .map(str::to_owned)
            .unwrap_or_else(|| workspace_root.join("target").to_string_lossy().into_owned()),
    );
    Ok(Target {
        package: name,
        version: str_field(package, "version").unwrap_or("0.0.0").to_owned(),
        manifest_dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
        app_path: app_path.map(str::to_owned),
        workspace_root,
        target_dir,
        kafkaesk,
    })
}

/// The kafkaesk package the target depends on, from the resolve graph.
fn kafkaesk_dependency(
    metadata: &Value,
    packages: &[Value],
    package_id: &str,
) -> Option<KafkaeskSource> {
    let node = metadata["resolve"]["nodes"]
        .as_array()?
        .iter()
        .find(|n| str_field(n, "id") == Some(package_id))?;
    let dependency_ids: Vec<&str> = node["dependencies"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let kafkaesk = packages.iter().find(|p| {
        str_field(p, "name") == Some("kafkaesk")
            && str_field(p, "id").is_some_and(|id| dependency_ids.contains(&id))
    })?;
    if kafkaesk["source"].is_null() {
        let manifest = PathBuf::from(str_field(kafkaesk, "manifest_path")?);
        Some(KafkaeskSource::Path(manifest.parent()?.to_path_buf()))
    } else {
        Some(KafkaeskSource::Registry(
            str_field(kafkaesk, "version")?.to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_splits_at_the_first_double_colon() {
        assert_eq!(split_spec("examples/service"), ("examples/service", None));
        assert_eq!(split_spec("svc::api::app"), ("svc", Some("api::app")));
    }

    #[test]
    fn app_paths_must_be_rust_paths() {
        assert!(validate_app_path("api::app").is_ok());
        assert!(validate_app_path("app").is_ok());
        assert!(validate_app_path("api::").is_err());
        assert!(validate_app_path("a-b").is_err());
        assert!(validate_app_path("1x").is_err());
    }
}
