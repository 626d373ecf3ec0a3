//! Edits of the `joblet-config.yml` that `joblet init` generated, for
//! [`crate::System::start_with`]. They work on the text so that the file keeps its comments
//! and layout, and panic when the key they edit is missing (the config changed shape).

/// Sets `key: value` on every line whose key is `key`, keeping the indentation.
pub fn set(cfg: &mut String, key: &str, value: &str) {
    let mut found = false;
    let prefix = format!("{key}:");
    *cfg = cfg
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with(&prefix) {
                found = true;
                format!("{}{key}: {value}", &l[..l.len() - t.len()])
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    cfg.push('\n');
    assert!(found, "the generated config has no {key}");
}

/// Adds a host path to `filesystem.allowedMounts` (bound read-only into every job).
pub fn add_allowed_mount(cfg: &mut String, path: &str) {
    let mut out = Vec::new();
    let mut added = false;
    for l in cfg.lines() {
        out.push(l.to_owned());
        if !added && l.trim_start() == "allowedMounts:" {
            let indent = l.len() - l.trim_start().len() + 2;
            out.push(format!("{}- {path:?}", " ".repeat(indent)));
            added = true;
        }
    }
    assert!(
        added,
        "the generated config has no filesystem.allowedMounts"
    );
    *cfg = out.join("\n");
    cfg.push('\n');
}
