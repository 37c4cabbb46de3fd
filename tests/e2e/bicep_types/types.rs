//! The Bicep type data in `../shared/bicep-types` (see its SOURCE.md): which resource types and
//! api-versions exist, and the type graph each `types.json` holds (nodes referenced by index,
//! `"$ref": "#/N"`). Files are read when a template first names their provider and version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

/// Property flags (bicep-types `ObjectTypePropertyFlags`).
pub const REQUIRED: u64 = 1;
pub const READ_ONLY: u64 = 2;

/// One `types.json`: an array of type nodes.
pub struct TypeFile(Vec<Value>);

/// A node in one file.
#[derive(Clone)]
pub struct Ty {
    file: Arc<TypeFile>,
    index: usize,
}

impl Ty {
    pub fn node(&self) -> &Value {
        &self.file.0[self.index]
    }

    pub fn kind(&self) -> &str {
        self.node()["$type"].as_str().unwrap_or("")
    }

    /// Follows a `{"$ref": "#/N"}` of this file.
    pub fn follow(&self, reference: &Value) -> Option<Ty> {
        let index = reference["$ref"]
            .as_str()?
            .strip_prefix("#/")?
            .parse()
            .ok()?;
        (index < self.file.0.len()).then(|| Ty {
            file: self.file.clone(),
            index,
        })
    }

    /// Child by field (`itemType`, `additionalProperties`, ...).
    pub fn field(&self, key: &str) -> Option<Ty> {
        self.follow(self.node().get(key)?)
    }

    /// `ObjectType` properties (for `DiscriminatedObjectType`, the base properties plus those of
    /// the element `discriminator_value` selects, when given): name -> (type, flags).
    pub fn properties(&self, discriminator_value: Option<&str>) -> BTreeMap<String, (Ty, u64)> {
        let mut out = BTreeMap::new();
        let node = self.node();
        let mut add = |props: &Value, owner: &Ty| {
            for (name, p) in props.as_object().into_iter().flatten() {
                if let Some(t) = owner.follow(&p["type"]) {
                    out.insert(name.clone(), (t, p["flags"].as_u64().unwrap_or(0)));
                }
            }
        };
        match self.kind() {
            "ObjectType" => add(&node["properties"], self),
            "DiscriminatedObjectType" => {
                add(&node["baseProperties"], self);
                if let Some(element) = discriminator_value
                    .and_then(|v| node["elements"].get(v))
                    .and_then(|r| self.follow(r))
                {
                    add(&element.node()["properties"], &element);
                }
            }
            _ => {}
        }
        out
    }

    /// Short human name of the type, for messages.
    pub fn describe(&self) -> String {
        let n = self.node();
        match self.kind() {
            "StringLiteralType" => format!("'{}'", n["value"].as_str().unwrap_or("")),
            "ObjectType" => format!("object {}", n["name"].as_str().unwrap_or("")),
            "ArrayType" => "array".into(),
            "StringType" => "string".into(),
            "IntegerType" => "int".into(),
            "BooleanType" => "bool".into(),
            "UnionType" => {
                let parts: Vec<String> = n["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| self.follow(e))
                    .map(|t| t.describe())
                    .collect();
                parts.join(" | ")
            }
            other => other.to_string(),
        }
    }
}

/// The whole `bicep-types` directory.
pub struct TypeData {
    root: PathBuf,
    cache: std::sync::Mutex<BTreeMap<PathBuf, Arc<TypeFile>>>,
}

/// Why a `Type@version` cannot be found.
pub enum Missing {
    UnknownType,
    UnknownVersion { known: Vec<String> },
}

impl TypeData {
    pub fn new(root: &Path) -> Self {
        TypeData {
            root: root.to_path_buf(),
            cache: Default::default(),
        }
    }

    fn load(&self, path: &Path) -> Arc<TypeFile> {
        let mut cache = self.cache.lock().expect("type cache");
        cache
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                let text = std::fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let json: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
                match json {
                    Value::Array(nodes) => Arc::new(TypeFile(nodes)),
                    _ => panic!("{} is not an array of type nodes", path.display()),
                }
            })
            .clone()
    }

    /// Folders that may hold `namespace` (lower case) at `version`: `az/generated/*/<ns>/<v>`
    /// for Azure, `graph/<v>/*` for Microsoft Graph.
    fn version_dirs(&self, namespace: &str) -> Vec<(String, PathBuf)> {
        let list = |d: &Path| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(d)
                .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            v.sort();
            v
        };
        let mut out = Vec::new();
        if namespace == "microsoft.graph" {
            for v in list(&self.root.join("graph")) {
                for release in list(&v) {
                    let name = v.file_name().unwrap().to_string_lossy().to_string();
                    out.push((name, release));
                }
            }
        } else {
            for group in list(&self.root.join("az/generated")) {
                for v in list(&group.join(namespace)) {
                    let name = v.file_name().unwrap().to_string_lossy().to_string();
                    out.push((name, v));
                }
            }
        }
        out
    }

    /// The `ResourceType` node named `type_and_version` ("Microsoft.Web/sites@2024-04-01").
    pub fn resource(&self, type_and_version: &str) -> Result<Ty, Missing> {
        let (ty, version) = type_and_version
            .split_once('@')
            .ok_or(Missing::UnknownType)?;
        let namespace = ty.split('/').next().unwrap_or("").to_ascii_lowercase();
        let wanted = type_and_version.to_ascii_lowercase();
        let find = |dir: &Path| -> Option<Ty> {
            let path = dir.join("types.json");
            let file = path.is_file().then(|| self.load(&path))?;
            let index = file.0.iter().position(|node| {
                node["$type"] == "ResourceType"
                    && node["name"].as_str().unwrap_or("").to_ascii_lowercase() == wanted
            })?;
            Some(Ty { file, index })
        };
        let dirs = self.version_dirs(&namespace);
        if let Some(found) = dirs
            .iter()
            .filter(|(v, _)| *v == version)
            .find_map(|(_, d)| find(d))
        {
            return Ok(found);
        }
        // Not there: which versions do name the type (read only on this error path).
        let ty_lower = ty.to_ascii_lowercase();
        let mut known: Vec<String> = dirs
            .iter()
            .filter(|(_, dir)| {
                let path = dir.join("types.json");
                path.is_file()
                    && self.load(&path).0.iter().any(|node| {
                        node["$type"] == "ResourceType"
                            && node["name"]
                                .as_str()
                                .unwrap_or("")
                                .to_ascii_lowercase()
                                .split('@')
                                .next()
                                == Some(ty_lower.as_str())
                    })
            })
            .map(|(v, _)| v.clone())
            .collect();
        known.sort();
        known.dedup();
        if known.is_empty() {
            Err(Missing::UnknownType)
        } else {
            Err(Missing::UnknownVersion { known })
        }
    }
}
