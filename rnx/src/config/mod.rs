//! `rnx-config.yml`: the nodes a user can talk to, each with its address and embedded PEM
//! client certificate, key and CA. Same keys as Joblet's file, so an existing one works.

pub mod locate;
mod permissions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Exit;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config: {} not found; looked in {} (see `rnx config-help`)",
        locate::FILE_NAME,
        join_paths(looked_in)
    )]
    NotFound { looked_in: Vec<PathBuf> },
    #[error("config: {} not found (given by {origin})", path.display())]
    ExplicitMissing { path: PathBuf, origin: &'static str },
    #[error("config: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {} is not a valid rnx-config.yml: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("config: {} defines no nodes (see `rnx config-help`)", path.display())]
    NoNodes { path: PathBuf },
    #[error("config: node '{name}' not found; configured nodes: {}", available.join(", "))]
    UnknownNode {
        name: String,
        available: Vec<String>,
    },
    #[error(
        "config: several nodes are marked isDefault: true ({}); keep one or pass --node",
        names.join(", ")
    )]
    SeveralDefaults { names: Vec<String> },
    #[error(
        "config: no default node: mark one with isDefault: true, name one 'default', \
         or pass --node (one of: {})",
        available.join(", ")
    )]
    NoDefault { available: Vec<String> },
    #[error("config: node '{node}' has no {field}")]
    Missing { node: String, field: &'static str },
    #[error("config: node '{node}': {field} is not a PEM {expected}")]
    NotPem {
        node: String,
        field: &'static str,
        expected: &'static str,
    },
}

impl ConfigError {
    pub fn exit(&self) -> Exit {
        match self {
            ConfigError::UnknownNode { .. } => Exit::NotFound,
            _ => Exit::Generic,
        }
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parsed file. Unknown keys (`version`, future ones) are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct ClientConfig {
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeConfig {
    #[serde(default)]
    pub address: String,
    #[serde(rename = "isDefault", default)]
    pub is_default: bool,
    #[serde(rename = "nodeId", default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub ca: Option<String>,
}

/// Everything needed to connect to one node.
#[derive(Clone)]
pub struct Target {
    pub node: String,
    pub address: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for Target {
    // The key stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("node", &self.node)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// A config file and where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: ClientConfig,
}

/// Finds, reads and parses the config, warning on stderr if others can read it.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let home = std::env::home_dir();
    let path = locate::locate(
        explicit,
        std::env::var_os(locate::ENV_VAR),
        home.as_deref(),
        |p| p.is_file(),
    )?;
    if let Some(warning) = permissions::exposure_warning(&path) {
        eprintln!("{warning}");
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let config = ClientConfig::parse(&text, &path)?;
    Ok(Loaded { path, config })
}

impl ClientConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: ClientConfig =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if config.nodes.is_empty() {
            return Err(ConfigError::NoNodes {
                path: path.to_path_buf(),
            });
        }
        Ok(config)
    }

    fn names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// The node used without `--node`: the one marked `isDefault: true`, else the one named
    /// `default`, else the only one.
    pub fn default_node(&self) -> Result<&str, ConfigError> {
        let marked: Vec<&String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.is_default)
            .map(|(name, _)| name)
            .collect();
        match marked.as_slice() {
            [one] => return Ok(one.as_str()),
            [] => {}
            several => {
                return Err(ConfigError::SeveralDefaults {
                    names: several.iter().map(|s| s.to_string()).collect(),
                });
            }
        }
        if let Some((name, _)) = self.nodes.get_key_value("default") {
            return Ok(name.as_str());
        }
        if self.nodes.len() == 1
            && let Some(name) = self.nodes.keys().next()
        {
            return Ok(name.as_str());
        }
        Err(ConfigError::NoDefault {
            available: self.names(),
        })
    }

    /// The node named by `--node`, or the default one.
    pub fn select(&self, requested: Option<&str>) -> Result<(&str, &NodeConfig), ConfigError> {
        let name = match requested {
            Some(name) => name,
            None => self.default_node()?,
        };
        self.nodes
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| ConfigError::UnknownNode {
                name: name.to_string(),
                available: self.names(),
            })
    }

    pub fn target(&self, requested: Option<&str>) -> Result<Target, ConfigError> {
        let (name, node) = self.select(requested)?;
        node.target(name)
    }
}

impl NodeConfig {
    /// The connection settings, checked enough to give a config error rather than a TLS one.
    pub fn target(&self, name: &str) -> Result<Target, ConfigError> {
        let address = self.address.trim();
        if address.is_empty() {
            return Err(ConfigError::Missing {
                node: name.to_string(),
                field: "address",
            });
        }
        Ok(Target {
            node: name.to_string(),
            address: address.to_string(),
            cert_pem: pem_field(name, "cert", self.cert.as_deref(), Pem::Certificate)?,
            key_pem: pem_field(name, "key", self.key.as_deref(), Pem::PrivateKey)?,
            ca_pem: pem_field(name, "ca", self.ca.as_deref(), Pem::Certificate)?,
        })
    }

    pub fn is_complete(&self) -> bool {
        [&self.cert, &self.key, &self.ca]
            .iter()
            .all(|f| f.as_deref().is_some_and(|s| !s.trim().is_empty()))
            && !self.address.trim().is_empty()
    }
}

#[derive(Clone, Copy)]
enum Pem {
    Certificate,
    PrivateKey,
}

fn pem_field(
    node: &str,
    field: &'static str,
    value: Option<&str>,
    kind: Pem,
) -> Result<String, ConfigError> {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::Missing {
            node: node.to_string(),
            field,
        })?;
    let (looks_right, expected) = match kind {
        Pem::Certificate => (value.contains("-----BEGIN CERTIFICATE-----"), "certificate"),
        Pem::PrivateKey => (
            value.contains("-----BEGIN") && value.contains("PRIVATE KEY-----"),
            "private key",
        ),
    };
    if !looks_right {
        return Err(ConfigError::NotPem {
            node: node.to_string(),
            field,
            expected,
        });
    }
    Ok(format!("{value}\n"))
}

#[cfg(test)]
mod tests;
