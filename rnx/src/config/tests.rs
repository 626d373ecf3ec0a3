use super::*;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";

fn node_yaml(name: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    address: \"127.0.0.1:50051\"\n{extra}    cert: |\n      {}\n      MIIB\n      -----END CERTIFICATE-----\n    key: |\n      -----BEGIN PRIVATE KEY-----\n      MIIE\n      -----END PRIVATE KEY-----\n    ca: |\n      -----BEGIN CERTIFICATE-----\n      MIIC\n      -----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----"
    )
}

fn parse(nodes: &[(&str, &str)]) -> ClientConfig {
    let mut text = String::from("version: \"3.0\"\nnodes:\n");
    for (name, extra) in nodes {
        text.push_str(&node_yaml(name, extra));
    }
    ClientConfig::parse(&text, Path::new("t.yml")).unwrap()
}

#[test]
fn joblet_format_with_embedded_pem_parses() {
    let c = parse(&[("default", "    nodeId: \"node-1\"\n")]);
    let node = &c.nodes["default"];
    assert_eq!(node.address, "127.0.0.1:50051");
    assert_eq!(node.node_id.as_deref(), Some("node-1"));
    assert!(node.cert.as_deref().unwrap().contains("BEGIN CERTIFICATE"));
    let t = c.target(None).unwrap();
    assert_eq!(t.node, "default");
    assert!(t.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        !format!("{t:?}").contains("PRIVATE"),
        "key must not be in Debug"
    );
}

#[test]
fn node_selection_prefers_flag_then_is_default_then_default_then_only() {
    let c = parse(&[("a", ""), ("b", "    isDefault: true\n"), ("default", "")]);
    assert_eq!(c.select(Some("a")).unwrap().0, "a");
    assert_eq!(c.select(None).unwrap().0, "b");

    let c = parse(&[("a", ""), ("default", "")]);
    assert_eq!(c.select(None).unwrap().0, "default");

    let c = parse(&[("solo", "")]);
    assert_eq!(c.select(None).unwrap().0, "solo");
}

#[test]
fn ambiguous_or_missing_default_is_an_error_naming_the_nodes() {
    let c = parse(&[("a", ""), ("b", "")]);
    let err = c.select(None).unwrap_err();
    assert!(matches!(err, ConfigError::NoDefault { .. }));
    assert!(err.to_string().contains("a, b"), "{err}");

    let c = parse(&[
        ("a", "    isDefault: true\n"),
        ("b", "    isDefault: true\n"),
    ]);
    let err = c.select(None).unwrap_err();
    assert!(matches!(err, ConfigError::SeveralDefaults { .. }), "{err}");
    // An explicit --node still works.
    assert_eq!(c.select(Some("b")).unwrap().0, "b");
}

#[test]
fn unknown_node_is_not_found_and_lists_the_choices() {
    let c = parse(&[("a", ""), ("b", "")]);
    let err = c.select(Some("prod")).unwrap_err();
    assert_eq!(err.exit(), Exit::NotFound);
    assert_eq!(
        err.to_string(),
        "config: node 'prod' not found; configured nodes: a, b"
    );
}

#[test]
fn empty_or_malformed_files_are_refused() {
    let err = ClientConfig::parse("version: 3\n", Path::new("t.yml")).unwrap_err();
    assert!(matches!(err, ConfigError::NoNodes { .. }), "{err}");
    let err = ClientConfig::parse("nodes: [1, 2\n", Path::new("t.yml")).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("t.yml"), "{err}");
}

#[test]
fn missing_or_non_pem_credentials_are_named() {
    let node = NodeConfig {
        address: "h:1".into(),
        is_default: false,
        node_id: None,
        cert: Some(CERT.into()),
        key: None,
        ca: Some(CERT.into()),
    };
    let err = node.target("n").unwrap_err();
    assert_eq!(err.to_string(), "config: node 'n' has no key");
    assert!(!node.is_complete());

    let node = NodeConfig {
        key: Some("/path/to/key.pem".into()),
        ..node
    };
    let err = node.target("n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "config: node 'n': key is not a PEM private key"
    );

    let node = NodeConfig {
        key: Some(KEY.into()),
        address: "  ".into(),
        ..node
    };
    assert_eq!(
        node.target("n").unwrap_err().to_string(),
        "config: node 'n' has no address"
    );
}
