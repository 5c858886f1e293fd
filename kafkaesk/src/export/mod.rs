//! Every registered schema as a file other programs can read: one JSON Schema
//! document per schema, and the service's AsyncAPI document beside them.
//!
//! ```text
//! kafkaesk schemas examples/service --out schemas/
//! ```
//!
//! writes what [`Application::write_schemas`] writes, from the same calls a
//! service can use to serve them itself:
//!
//! ```
//! #[kafkaesk::schema("Content", version = 2, streams = ["content.edited"])]
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! pub struct Content { pub foo: String }
//!
//! # fn main() -> Result<(), kafkaesk::Error> {
//! let mut router = kafkaesk::Router::new();
//! router.schema::<Content>()?;
//! let app = kafkaesk::Application::builder().mount(router).build()?;
//! let files = app.json_schemas();
//! assert_eq!(files[0].file_name, "Content-2.json");
//! assert_eq!(files[0].document["title"], "Content:2");
//! assert_eq!(files[0].document["$id"], "Content-2.json");
//! let asyncapi = app.asyncapi("content-service", "1.0.0");
//! assert_eq!(asyncapi["asyncapi"], "3.0.0");
//! # Ok(()) }
//! ```
//!
//! A schema's document is its JSON Schema as schemars writes it (draft
//! 2020-12), describing the envelope's `data`, with `title` set to the
//! `"Id:version"` key and `$id` to its file name, `<Id>-<version>.json`, so
//! a directory of them can be served or referenced as it is. Characters of
//! the id other than ASCII letters, digits, `.`, `_` and `-` become `_` in
//! the file name.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub mod asyncapi;
mod draft07;

use crate::app::Application;
use crate::error::{Error, Result};
use crate::schema::SchemaInfo;
use crate::subscription::Router;

/// One schema's JSON Schema document and the file name it is written under.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSchemaFile {
    /// `<Id>-<version>.json`, e.g. `Content-1.json`.
    pub file_name: String,
    /// The schema's `"Id:version"` key.
    pub key: String,
    /// The JSON Schema of the envelope's `data`, with `$id` and `title` set.
    pub document: Value,
}

/// The file name of [`asyncapi`] documents beside the schemas.
pub const ASYNCAPI_FILE_NAME: &str = "asyncapi.json";

/// `Content-1` for `Content:1`: the name of a schema's file (without
/// `.json`) and of its AsyncAPI components, unique among `schemas`.
///
/// Ids that only differ in characters replaced by `_` get `_2`, `_3`, ...
/// appended in registration order, so no file overwrites another.
pub(crate) fn stems<'a>(schemas: impl IntoIterator<Item = &'a SchemaInfo>) -> Vec<String> {
    let mut stems: Vec<String> = Vec::new();
    for schema in schemas {
        let base = format!("{}-{}", safe_name(schema.id()), schema.version());
        let mut stem = base.clone();
        let mut n = 1;
        while stems.contains(&stem) {
            n += 1;
            stem = format!("{base}_{n}");
        }
        stems.push(stem);
    }
    stems
}

/// `name` with every character other than ASCII letters, digits, `.`, `_`
/// and `-` replaced by `_`: safe in file names, and in AsyncAPI component
/// keys and JSON pointers.
pub(crate) fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn document(schema: &SchemaInfo, file_name: &str) -> Value {
    let mut document = schema.json_schema().clone();
    if let Value::Object(object) = &mut document {
        object.insert("$id".to_owned(), Value::from(file_name));
        // The key on the wire says more than the Rust type's name schemars wrote.
        object.insert("title".to_owned(), Value::from(schema.key()));
    }
    document
}

impl Router {
    /// The JSON Schema document of every registered schema, in registration
    /// order; see the [module docs](self).
    pub fn json_schemas(&self) -> Vec<JsonSchemaFile> {
        let schemas: Vec<&SchemaInfo> = self.schemas().collect();
        schemas
            .iter()
            .zip(stems(schemas.iter().copied()))
            .map(|(schema, stem)| {
                let file_name = format!("{stem}.json");
                JsonSchemaFile {
                    document: document(schema, &file_name),
                    key: schema.key().to_owned(),
                    file_name,
                }
            })
            .collect()
    }
}

impl Application {
    /// The JSON Schema document of every schema the application registered;
    /// see [`export`](self).
    pub fn json_schemas(&self) -> Vec<JsonSchemaFile> {
        self.router().json_schemas()
    }

    /// Writes [`json_schemas`](Self::json_schemas) (`<Id>-<version>.json`
    /// each) and the [`asyncapi`](Self::asyncapi) document
    /// (`asyncapi.json`) into `dir`, creating it if needed, and returns the
    /// paths written. What `kafkaesk schemas TARGET --out DIR` runs.
    ///
    /// Files are pretty-printed and end with a newline, so they diff well
    /// when committed. Other files in `dir` are left alone.
    pub fn write_schemas(
        &self,
        dir: impl AsRef<Path>,
        title: &str,
        version: &str,
    ) -> Result<Vec<PathBuf>> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Export {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<(String, Value)> = self
            .json_schemas()
            .into_iter()
            .map(|file| (file.file_name, file.document))
            .collect();
        files.push((ASYNCAPI_FILE_NAME.to_owned(), self.asyncapi(title, version)));
        let mut written = Vec::with_capacity(files.len());
        for (name, document) in files {
            let path = dir.join(name);
            let mut text =
                serde_json::to_string_pretty(&document).map_err(|source| Error::Serialize {
                    type_name: "serde_json::Value",
                    source,
                })?;
            text.push('\n');
            std::fs::write(&path, text).map_err(|source| Error::Export {
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Inner {
        n: u8,
    }

    /// Nested types are part of the document.
    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Content {
        #[schemars(length(min = 1))]
        foo: String,
        inner: Inner,
    }
    impl Schema for Content {
        const ID: &'static str = "Content";
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Slashed {
        a: bool,
    }
    impl Schema for Slashed {
        const ID: &'static str = "Content:1";
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Underscored {
        a: bool,
    }
    impl Schema for Underscored {
        const ID: &'static str = "Content_1";
    }

    #[test]
    fn each_schema_is_a_standalone_document_named_by_its_key() {
        let mut router = Router::new();
        router.schema::<Content>().unwrap();
        let files = router.json_schemas();
        assert_eq!(files.len(), 1);
        let file = &files[0];
        assert_eq!(
            (file.file_name.as_str(), file.key.as_str()),
            ("Content-1.json", "Content:1")
        );
        let doc = &file.document;
        assert_eq!(
            doc["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(doc["$id"], "Content-1.json");
        assert_eq!(doc["title"], "Content:1");
        assert_eq!(doc["description"], "Nested types are part of the document.");
        // Standalone: the nested type's definition travels with it.
        assert!(doc["$defs"]["Inner"].is_object(), "{doc}");
        let validator = jsonschema::validator_for(doc).unwrap();
        assert!(validator.is_valid(&serde_json::json!({"foo": "x", "inner": {"n": 1}})));
        assert!(!validator.is_valid(&serde_json::json!({"foo": "x", "inner": {"n": -1}})));
        assert!(!validator.is_valid(&serde_json::json!({"foo": "", "inner": {"n": 1}})));
    }

    #[test]
    fn ids_that_are_not_file_names_get_distinct_safe_names() {
        let mut router = Router::new();
        router.schema::<Underscored>().unwrap();
        router.schema::<Slashed>().unwrap();
        let names: Vec<String> = router
            .json_schemas()
            .into_iter()
            .map(|f| f.file_name)
            .collect();
        assert_eq!(names, ["Content_1-1.json", "Content_1-1_2.json"]);
    }

    #[test]
    fn write_schemas_writes_every_document_and_asyncapi() {
        let dir = std::env::temp_dir().join(format!("kafkaesk-export-{}", std::process::id()));
        let app = Application::builder().build().unwrap();
        let mut router = Router::new();
        router.schema::<Content>().unwrap();
        app.mount(router).unwrap();
        let written = app
            .write_schemas(dir.join("nested"), "svc", "1.2.3")
            .unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["Content-1.json", "asyncapi.json"]);
        let text = std::fs::read_to_string(&written[1]).unwrap();
        assert!(text.ends_with("}\n"), "{text}");
        let asyncapi: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(asyncapi["info"]["title"], "svc");
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&written[0]).unwrap()).unwrap();
        assert_eq!(schema, app.json_schemas()[0].document);
        std::fs::remove_dir_all(&dir).unwrap();

        let file = dir.with_extension("file");
        std::fs::write(&file, "").unwrap();
        let err = app.write_schemas(&file, "svc", "1").unwrap_err();
        assert!(matches!(err, Error::Export { .. }), "{err:?}");
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
