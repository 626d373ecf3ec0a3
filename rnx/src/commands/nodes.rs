//! `rnx nodes`: the nodes in the config file (no connection is made).

use serde::Serialize;

use crate::commands::Globals;
use crate::config::{self, ClientConfig};
use crate::error::CliError;
use crate::output::table::Table;
use crate::output::{print_json, print_text};

pub fn run(globals: &Globals) -> Result<(), CliError> {
    let loaded = config::load(globals.config.as_deref())?;
    let default = match loaded.config.default_node() {
        Ok(name) => Some(name.to_string()),
        Err(e) => {
            eprintln!("note: {e}");
            None
        }
    };
    if globals.json {
        return print_json(&to_json(&loaded.config, default.as_deref()));
    }
    let mut text = format!("Nodes in {}:\n\n", loaded.path.display());
    text.push_str(&render(&loaded.config, default.as_deref()));
    if let Some(default) = &default {
        text.push_str(&format!("\n* marks the default node ({default})."));
        if let Some(other) = loaded.config.nodes.keys().find(|n| *n != default) {
            text.push_str(&format!(" Use another with: rnx --node={other} job list"));
        }
    }
    print_text(&text)
}

/// Credentials are shown only as `***` (present) or `-` (missing).
pub fn render(config: &ClientConfig, default: Option<&str>) -> String {
    let mut table = Table::new(["", "NAME", "ADDRESS", "NODE ID", "CERT", "KEY", "CA"]);
    let shown = |v: &Option<String>| {
        if v.as_deref().is_some_and(|s| !s.trim().is_empty()) {
            "***"
        } else {
            "-"
        }
    };
    for (name, node) in &config.nodes {
        let marker = if Some(name.as_str()) == default {
            "*"
        } else {
            ""
        };
        table.row([
            marker,
            name,
            if node.address.is_empty() {
                "-"
            } else {
                &node.address
            },
            node.node_id
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("-"),
            shown(&node.cert),
            shown(&node.key),
            shown(&node.ca),
        ]);
    }
    table.render()
}

#[derive(Debug, Serialize)]
pub struct NodeJson<'a> {
    name: &'a str,
    address: &'a str,
    #[serde(rename = "nodeId", skip_serializing_if = "Option::is_none")]
    node_id: Option<&'a str>,
    /// `active` when the entry is complete (address, cert, key, ca), else `error`.
    status: &'static str,
    default: bool,
}

pub fn to_json<'a>(config: &'a ClientConfig, default: Option<&str>) -> Vec<NodeJson<'a>> {
    config
        .nodes
        .iter()
        .map(|(name, node)| NodeJson {
            name,
            address: &node.address,
            node_id: node.node_id.as_deref().filter(|s| !s.is_empty()),
            status: if node.is_complete() {
                "active"
            } else {
                "error"
            },
            default: Some(name.as_str()) == default,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use serde_json::json;

    fn config() -> ClientConfig {
        let pem = Some("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----".to_string());
        let full = NodeConfig {
            address: "127.0.0.1:50051".into(),
            is_default: true,
            node_id: Some("n1".into()),
            cert: pem.clone(),
            key: Some("-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----".into()),
            ca: pem,
        };
        let partial = NodeConfig {
            address: "10.0.0.2:50051".into(),
            is_default: false,
            node_id: None,
            cert: None,
            key: None,
            ca: None,
        };
        ClientConfig {
            nodes: [
                ("default".to_string(), full),
                ("viewer".to_string(), partial),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn table_marks_the_default_and_hides_credentials() {
        let text = render(&config(), Some("default"));
        assert_eq!(
            text,
            "   NAME     ADDRESS          NODE ID  CERT  KEY  CA\n\
             *  default  127.0.0.1:50051  n1       ***   ***  ***\n   \
             viewer   10.0.0.2:50051   -        -     -    -\n"
        );
        assert!(!text.contains("SECRETKEY"));
    }

    #[test]
    fn json_shape() {
        assert_eq!(
            serde_json::to_value(to_json(&config(), Some("default"))).unwrap(),
            json!([
                {"name": "default", "address": "127.0.0.1:50051", "nodeId": "n1",
                 "status": "active", "default": true},
                {"name": "viewer", "address": "10.0.0.2:50051", "status": "error",
                 "default": false}
            ])
        );
    }
}
