//! Request text never holds U+0000 (PostgreSQL cannot store it, so `json_body` refuses it on
//! every backend): this modifier gives every free-text string of a request body that pattern,
//! following `$ref`s into the components they name, and where a body may carry fields nobody
//! reads (gateway webhooks) they are `JsonValue`s: any JSON without U+0000. Strings with a
//! pattern, an enum or a format already exclude it (the patterns in `constraints` are written
//! to).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, SchemaType};
use utoipa::openapi::{ObjectBuilder, OpenApi, Ref, RefOr, Schema, Type};
use utoipa::Modify;

use super::constraints::NUL_FREE_PATTERN;

const COMPONENT_PREFIX: &str = "#/components/schemas/";
/// The component extra fields of a request body are held to.
const ANY_JSON: &str = "JsonValue";

pub struct NulFreeRequestText;

impl Modify for NulFreeRequestText {
    fn modify(&self, openapi: &mut OpenApi) {
        let mut pending: Vec<String> = Vec::new();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let Some(body) = operation.request_body.as_mut() else {
                    continue;
                };
                for content in body.content.values_mut() {
                    if let Some(schema) = content.schema.as_mut() {
                        visit(schema, &mut pending);
                    }
                }
            }
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        components
            .schemas
            .insert(ANY_JSON.to_owned(), any_json().into());
        let mut done = BTreeSet::new();
        while let Some(name) = pending.pop() {
            if !done.insert(name.clone()) {
                continue;
            }
            if let Some(schema) = components.schemas.get_mut(&name) {
                visit(schema, &mut pending);
            }
        }
    }
}

fn nul_free_text() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(NUL_FREE_PATTERN))
}

/// Any JSON value whose text (strings and keys, at any depth) holds no U+0000. Typeless, each
/// keyword constraining only its own type: client generators read it as "any value", where a
/// union with an array branch defeats some of them. Its `items` is added by [`with_items`]: a
/// typeless schema with `items` has no utoipa type.
fn any_json() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .pattern(Some(NUL_FREE_PATTERN))
        .property_names(Some(nul_free_text()))
        .additional_properties(Some(AdditionalProperties::RefOr(
            Ref::from_schema_name(ANY_JSON).into(),
        )))
        .description(Some("Any JSON value whose strings and keys hold no U+0000"))
        .into()
}

/// The served document: `JsonValue` gets the `items` keyword utoipa cannot state on it.
pub fn with_items(mut document: Value) -> Value {
    if let Some(any) = document.pointer_mut(&format!("/components/schemas/{ANY_JSON}")) {
        if let Some(any) = any.as_object_mut() {
            any.insert(
                "items".into(),
                json!({ "$ref": format!("{COMPONENT_PREFIX}{ANY_JSON}") }),
            );
        }
    }
    document
}

fn visit(schema: &mut RefOr<Schema>, refs: &mut Vec<String>) {
    match schema {
        RefOr::Ref(reference) => {
            if let Some(name) = reference.ref_location.strip_prefix(COMPONENT_PREFIX) {
                refs.push(name.to_owned());
            }
        }
        RefOr::T(schema) => visit_schema(schema, refs),
    }
}

fn visit_schema(schema: &mut Schema, refs: &mut Vec<String>) {
    match schema {
        Schema::Object(object) => {
            let is_text = match &object.schema_type {
                SchemaType::Type(kind) => *kind == Type::String,
                SchemaType::Array(kinds) => kinds.contains(&Type::String),
                SchemaType::AnyValue => false,
            };
            let constrained =
                object.pattern.is_some() || object.enum_values.is_some() || object.format.is_some();
            if is_text && !constrained {
                object.pattern = Some(NUL_FREE_PATTERN.to_owned());
            }
            let is_object = match &object.schema_type {
                SchemaType::Type(kind) => *kind == Type::Object,
                SchemaType::Array(kinds) => kinds.contains(&Type::Object),
                SchemaType::AnyValue => false,
            };
            if is_object && object.additional_properties.is_none() {
                object.additional_properties = Some(Box::new(AdditionalProperties::RefOr(
                    Ref::from_schema_name(ANY_JSON).into(),
                )));
                object.property_names = Some(Box::new(nul_free_text().into()));
            }
            for property in object.properties.values_mut() {
                visit(property, refs);
            }
            if let Some(AdditionalProperties::RefOr(extra)) =
                object.additional_properties.as_deref_mut()
            {
                visit(extra, refs);
            }
            if let Some(names) = object.property_names.as_deref_mut() {
                visit_schema(names, refs);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                visit(items, refs);
            }
        }
        Schema::AllOf(all) => all.items.iter_mut().for_each(|s| visit(s, refs)),
        Schema::OneOf(one) => one.items.iter_mut().for_each(|s| visit(s, refs)),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(|s| visit(s, refs)),
        _ => {}
    }
}
