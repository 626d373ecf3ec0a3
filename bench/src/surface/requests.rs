//! The request types a privileged process accepts: the variants of its channel's request
//! enum, read from `ipc-proto` (the contract both sides compile), with their fields and the
//! first line of their documentation.

use std::path::Path;

use syn::{Fields, Item};

use super::SurfaceError;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Request {
    pub name: String,
    pub fields: Vec<String>,
    pub doc: String,
}

/// The variants of `enum_name` in `file`.
pub fn variants(file: &Path, enum_name: &str) -> Result<Vec<Request>, SurfaceError> {
    let text = std::fs::read_to_string(file).map_err(|source| SurfaceError::Read {
        path: file.to_owned(),
        source,
    })?;
    parse(&text, enum_name).ok_or_else(|| SurfaceError::Parse {
        path: file.to_owned(),
        reason: format!("no enum {enum_name}"),
    })
}

fn parse(text: &str, enum_name: &str) -> Option<Vec<Request>> {
    let ast = syn::parse_file(text).ok()?;
    let e = ast.items.iter().find_map(|i| match i {
        Item::Enum(e) if e.ident == enum_name => Some(e),
        _ => None,
    })?;
    Some(
        e.variants
            .iter()
            .map(|v| Request {
                name: v.ident.to_string(),
                fields: match &v.fields {
                    Fields::Named(n) => n
                        .named
                        .iter()
                        .filter_map(|f| f.ident.as_ref().map(|i| i.to_string()))
                        .collect(),
                    Fields::Unnamed(u) => (0..u.unnamed.len()).map(|i| i.to_string()).collect(),
                    Fields::Unit => Vec::new(),
                },
                doc: first_doc_sentence(&v.attrs),
            })
            .collect(),
    )
}

fn first_doc_sentence(attrs: &[syn::Attribute]) -> String {
    let mut doc = String::new();
    for a in attrs {
        if let syn::Meta::NameValue(nv) = &a.meta
            && nv.path.is_ident("doc")
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            if !doc.is_empty() {
                doc.push(' ');
            }
            doc.push_str(s.value().trim());
        }
    }
    match doc.find(". ") {
        Some(end) => doc[..=end].to_owned(),
        None => doc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_variants_fields_and_docs() {
        let src = "pub enum Other { X }\n\
                   pub enum SpawnerRequest {\n\
                   /// Start a job now. Carries one fd.\n\
                   StartJob { job: JobId, launch: LaunchSpec },\n\
                   /// The frontend recorded this job's exit: the spawner may\n\
                   /// release its resources.\n\
                   AckExit { job: JobId },\n\
                   Ping,\n}\n";
        let v = parse(src, "SpawnerRequest").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].name, "StartJob");
        assert_eq!(v[0].fields, ["job", "launch"]);
        assert_eq!(v[0].doc, "Start a job now.");
        assert_eq!(
            v[1].doc,
            "The frontend recorded this job's exit: the spawner may release its resources."
        );
        assert!(v[2].fields.is_empty());
        assert!(parse(src, "Missing").is_none());
    }

    #[test]
    fn the_real_spawner_contract_parses() {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../ipc-proto/src/channel/spawner.rs");
        let v = variants(&file, "SpawnerRequest").unwrap();
        assert!(v.iter().any(|r| r.name == "StartJob"));
    }
}
