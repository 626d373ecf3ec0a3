//! `rnx config-help`: an example `rnx-config.yml` and where it is looked for.

use serde::Serialize;

use crate::commands::Globals;
use crate::config::locate;
use crate::error::CliError;
use crate::output::{print_json, print_text};

const EXAMPLE: &str = r#"version: "3.0"

nodes:
  default:
    address: "192.168.1.100:50051"
    isDefault: true
    nodeId: "node-1"            # optional, shown by `rnx nodes`
    cert: |
      -----BEGIN CERTIFICATE-----
      ... client certificate (its OU is your role: admin or viewer) ...
      -----END CERTIFICATE-----
    key: |
      -----BEGIN PRIVATE KEY-----
      ... client private key ...
      -----END PRIVATE KEY-----
    ca: |
      -----BEGIN CERTIFICATE-----
      ... the CA that signed the server's certificate ...
      -----END CERTIFICATE-----

  viewer:
    address: "192.168.1.100:50051"
    cert: |
      ... a certificate with OU=viewer (read-only) ...
    key: |
      ...
    ca: |
      ...

  production:                   # another server: rnx --node=production job list
    address: "prod-joblet.example.com:50051"
    nodeId: "prod-1"
    cert: |
      ... a client certificate signed by production's CA ...
    key: |
      ...
    ca: |
      ... production's CA ...
"#;

const FIELDS: &str = "\
Fields of each node:
  address    host:port of the server (TLS only; https://host:port is also accepted)
  isDefault  true for the node used without --node (at most one)
  nodeId     optional label, shown by `rnx nodes`
  cert       the client certificate (PEM); its OU is the role: admin, viewer or reader
  key        the client private key (PEM)
  ca         the CA that signed the server's certificate (PEM); only this CA is trusted
";

#[derive(Debug, Serialize)]
struct HelpJson {
    example: &'static str,
    search_order: Vec<String>,
    node_selection: &'static str,
    server_name: &'static str,
}

const NODE_SELECTION: &str = "--node NAME, else the node with isDefault: true, else the node \
                              named 'default', else the only node";

pub fn run(globals: &Globals) -> Result<(), CliError> {
    if globals.json {
        return print_json(&HelpJson {
            example: EXAMPLE,
            search_order: locate::describe_search_order(),
            node_selection: NODE_SELECTION,
            server_name: crate::connect::SERVER_NAME,
        });
    }
    print_text(&render())
}

pub fn render() -> String {
    let mut out = String::from(
        "RNX configuration\n=================\n\n\
         rnx needs an rnx-config.yml naming your Joblet nodes, each with its address and the\n\
         client certificate, key and CA (PEM, embedded in the file).\n\n\
         Example:\n\n",
    );
    out.push_str(EXAMPLE);
    out.push('\n');
    out.push_str(FIELDS);
    out.push_str("\nWhere it is looked for, in order (the first one found is used):\n");
    for (i, place) in locate::describe_search_order().iter().enumerate() {
        out.push_str(&format!("  {}. {place}\n", i + 1));
    }
    out.push_str(
        "\nWhich node: --node NAME, else the node with isDefault: true, else the node named\n\
         'default', else the only node.\n\n\
         The server certificate must be valid for the name 'joblet' (rnx checks that name,\n\
         whatever the address), and be signed by the node's ca.\n\n\
         Getting the file: `joblet init` on the server writes rnx-admin.yml and\n\
         rnx-viewer.yml; copy one to ~/.rnx/rnx-config.yml.\n\n\
         Security: the file holds a private key. Keep it mode 600 (rnx warns otherwise) and\n\
         out of version control.\n\n\
         Examples:\n\
         \x20 rnx nodes                          # list configured nodes\n\
         \x20 rnx job list                       # uses the default node\n\
         \x20 rnx --node=viewer job list         # uses the 'viewer' node\n\
         \x20 rnx --config=./my-rnx.yml job list # uses another file\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;
    use std::path::Path;

    #[test]
    fn example_parses_with_our_own_parser() {
        let c = ClientConfig::parse(EXAMPLE, Path::new("example")).unwrap();
        assert_eq!(c.default_node().unwrap(), "default");
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(
            c.nodes["production"].address,
            "prod-joblet.example.com:50051"
        );
    }

    #[test]
    fn help_lists_the_search_order() {
        let text = render();
        let env = text.find("$RNX_CONFIG").unwrap();
        let home = text.find("~/.rnx/rnx-config.yml").unwrap();
        let opt = text.find("/opt/joblet/config/rnx-config.yml").unwrap();
        assert!(env < home && home < opt, "{text}");
        assert!(text.contains("isDefault  true for the node used without --node"));
    }
}
