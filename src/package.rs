//! `secret-rotator package`: the deployable zip, laid out as the Functions host expects at the
//! app root (contracts §1.1): `host.json`, the binary under the name host.json's
//! `customHandler.description.defaultExecutablePath` gives it (unix mode 0755, so Linux can run
//! it after zip deploy), one `<Function>/function.json` per folder of `function-specs/`, and
//! optionally the policy file at the root (where a relative `ROTATOR_POLICY_PATH` points).
//!
//! The specs are checked first ([`crate::handler::specs::check_specs`]) so a zip that the host
//! would refuse to index is never built. Entries are written in a fixed order with a fixed
//! timestamp, so the same inputs give the same zip.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

use crate::handler::specs::{self, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not valid JSON: {reason}")]
    Json { path: String, reason: String },
    #[error("the function specs have problems:\n  {}", .0.join("\n  "))]
    Specs(Vec<String>),
    #[error("the binary {0} is not a file")]
    NoBinary(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

impl From<SpecError> for PackageError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Read { path, reason } => PackageError::Read { path, reason },
            SpecError::Json { path, reason } => PackageError::Json { path, reason },
        }
    }
}

#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// Holds `host.json` and `function-specs/` (the repository root).
    pub root: PathBuf,
    pub binary: PathBuf,
    pub out: PathBuf,
    /// Added at the zip root under its file name; must be JSON.
    pub policy: Option<PathBuf>,
}

/// What went into the zip.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageSummary {
    /// Entry names in the zip, in order.
    pub entries: Vec<String>,
    pub executable_name: String,
    pub bytes: u64,
}

pub fn build_package(opts: &PackageOptions) -> Result<PackageSummary, PackageError> {
    let host_path = opts.root.join("host.json");
    let host_text = read(&host_path)?;
    let host_json: serde_json::Value =
        serde_json::from_slice(&host_text).map_err(|e| PackageError::Json {
            path: host_path.display().to_string(),
            reason: e.to_string(),
        })?;
    let specs = specs::load_function_specs(&opts.root.join("function-specs"))?;
    let problems = specs::check_specs(&host_json, &specs);
    if !problems.is_empty() {
        return Err(PackageError::Specs(problems));
    }
    // check_specs guarantees a plain, non-empty file name here.
    let executable_name = host_json
        .pointer("/customHandler/description/defaultExecutablePath")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if !opts.binary.is_file() {
        return Err(PackageError::NoBinary(opts.binary.display().to_string()));
    }
    let binary = read(&opts.binary)?;
    let policy = match &opts.policy {
        None => None,
        Some(p) => Some(policy_entry(p, &executable_name)?),
    };

    // Every entry is read before the zip is started, in the zip's order.
    let mut entries: Vec<Entry> = vec![
        ("host.json".into(), host_text, 0o644),
        (executable_name.clone(), binary, 0o755),
    ];
    for spec in &specs {
        let path = opts
            .root
            .join("function-specs")
            .join(&spec.name)
            .join("function.json");
        entries.push((format!("{}/function.json", spec.name), read(&path)?, 0o644));
    }
    if let Some((name, data)) = policy {
        entries.push((name, data, 0o644));
    }
    let bytes = write_zip(&opts.out, &entries)?;
    Ok(PackageSummary {
        entries: entries.into_iter().map(|(name, _, _)| name).collect(),
        executable_name,
        bytes,
    })
}

/// A zip entry: name, content, unix mode.
type Entry = (String, Vec<u8>, u32);

/// The policy file's zip entry (its file name and content), once it is shown to be JSON and
/// not to collide with the other root entries.
fn policy_entry(p: &Path, executable_name: &str) -> Result<(String, Vec<u8>), PackageError> {
    let data = read(p)?;
    serde_json::from_slice::<serde_json::Value>(&data).map_err(|e| PackageError::Json {
        path: p.display().to_string(),
        reason: e.to_string(),
    })?;
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| PackageError::Read {
            path: p.display().to_string(),
            reason: "not a file name".into(),
        })?;
    if name == "host.json" || name == executable_name {
        return Err(PackageError::Read {
            path: p.display().to_string(),
            reason: format!("a policy file may not be named {name}"),
        });
    }
    Ok((name, data))
}

/// Writes `entries` to `out` in order, with a fixed timestamp; returns the zip's size.
fn write_zip(out: &Path, entries: &[Entry]) -> Result<u64, PackageError> {
    let write_err = |e: &dyn std::fmt::Display| PackageError::Write {
        path: out.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| write_err(&e))?;
    }
    // Written beside the target and renamed, so a failed run never leaves half a zip.
    let tmp = out.with_extension("zip.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| write_err(&e))?;
    let mut zip = zip::ZipWriter::new(file);
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for (name, data, mode) in entries {
        zip.start_file(name.as_str(), base.unix_permissions(*mode))
            .map_err(|e| write_err(&e))?;
        zip.write_all(data).map_err(|e| write_err(&e))?;
    }
    let file = zip.finish().map_err(|e| write_err(&e))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    std::fs::rename(&tmp, out).map_err(|e| write_err(&e))?;
    Ok(bytes)
}

fn read(p: &Path) -> Result<Vec<u8>, PackageError> {
    std::fs::read(p).map_err(|e| PackageError::Read {
        path: p.display().to_string(),
        reason: e.to_string(),
    })
}
