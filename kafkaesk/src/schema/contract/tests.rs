//! Unit tests of schema contracts: comparing registrations.

use serde_json::json;

use super::*;

fn registration(id: &str, version: u32, service: &str, schema: Value) -> Registration {
    Registration {
        id: id.into(),
        version,
        schema,
        service: service.into(),
        host: "h".into(),
    }
}

fn order(quantity_type: &str) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Order",
        "type": "object",
        "properties": {
            "id": {"type": "integer", "description": "Order number."},
            "quantity": {"type": quantity_type},
            "address": {"$ref": "#/$defs/Address"}
        },
        "required": ["id", "quantity", "address"],
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    })
}

/// A 547-byte registration whose 12 properties each reference the
/// object itself: unbounded inlining grew a service to 23 GB.
fn self_referencing(properties: usize) -> Value {
    let props: Map<String, Value> = (0..properties)
        .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/Node"})))
        .collect();
    json!({
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": props}}
    })
}

fn nodes(value: &Value) -> usize {
    1 + match value {
        Value::Object(map) => map.values().map(nodes).sum(),
        Value::Array(items) => items.iter().map(nodes).sum(),
        _ => 0,
    }
}

#[test]
fn a_schema_referencing_itself_everywhere_normalizes_within_a_bound() {
    let hostile = self_referencing(12);
    assert!(hostile.to_string().len() < 600);
    let started = std::time::Instant::now();
    let shape = normalize(&hostile);
    // When the budget runs out, what is left at each level of inlining
    // is copied as it stands in the original schema.
    let bound = MAX_SHAPE_NODES + MAX_INLINE_DEPTH * nodes(&hostile);
    assert!(nodes(&shape) <= bound, "{} > {bound}", nodes(&shape));
    // Comparing two of them is bounded by their size too.
    let found = check(&[
        registration("Node", 1, "a", hostile.clone()),
        registration("Node", 1, "b", self_referencing(11)),
        registration("Node", 2, "a", hostile),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn many_hostile_registrations_share_one_budget_and_unrelated_ids_are_left_alone() {
    let ours = [registration("Order", 1, "shop", order("integer"))];
    // Thousands of bombs under other ids: not even normalized.
    let others: Vec<Registration> = (0..2_000)
        .map(|i| registration("Node", 1, &format!("s{i}"), self_referencing(12)))
        .collect();
    let started = std::time::Instant::now();
    assert!(check_against(&ours, &others).is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The same under our id, in `check` (`schemas --check`): bounded by
    // the check's budget, and each difference quoted briefly.
    let mut bombs: Vec<Registration> = (0..200)
        .map(|i| registration("Order", 1, &format!("s{i}"), self_referencing(12 + i % 2)))
        .collect();
    bombs.push(registration(
        "Order",
        1,
        "long",
        json!({"type": "x".repeat(100_000)}),
    ));
    let found = check(&bombs);
    assert!(!found.is_empty());
    assert!(found.iter().all(|f| f.to_string().len() < 10_000));
}

#[test]
fn a_long_string_counts_against_the_budget() {
    let mut budget = 100;
    let long = json!({"description2": "y".repeat(64 * 1000)});
    let _ = inline(&long, &Value::Null, 0, &mut budget);
    assert_eq!(budget, 0);
}

#[test]
fn a_recursive_type_of_a_real_service_still_compares_equal_under_other_names() {
    let tree = |name: &str| {
        json!({
            "$ref": format!("#/$defs/{name}"),
            "$defs": {name: {"type": "object", "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": format!("#/$defs/{name}")}}
            }}}
        })
    };
    assert_eq!(normalize(&tree("Tree")), normalize(&tree("Node")));
}

#[test]
fn names_from_the_bus_are_printed_with_control_characters_escaped() {
    let found = SchemaFinding::Conflict {
        schema: "Order:1".into(),
        services: ("shop\x1b[2J".into(), "billing\nINFO forged line".into()),
        differences: vec!["/properties/\u{7}bell only in the first".into()],
    };
    let text = found.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.contains("shop\\u{1b}[2J"), "{text}");
    assert!(text.contains("billing\\u{a}INFO forged line"), "{text}");
}

#[test]
fn names_and_docs_do_not_make_a_conflict() {
    let mut other = order("integer");
    other["title"] = json!("PlacedOrder");
    other["properties"]["address"] = json!({"$ref": "#/$defs/Place"});
    other["$defs"] = json!({"Place": {"type": "object", "title": "Place", "properties": {"city": {"type": "string"}}, "required": ["city"]}});
    let found = check(&[
        registration("Order", 1, "shop", order("integer")),
        registration("Order", 1, "billing", other),
    ]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_different_shape_under_one_version_is_a_conflict_naming_both_services_and_fields() {
    let found = check(&[
        registration("Order", 1, "shop", order("integer")),
        registration("Order", 1, "billing", order("string")),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    let text = found[0].to_string();
    assert!(text.contains("Order:1"), "{text}");
    assert!(
        text.contains("`shop`") && text.contains("`billing`"),
        "{text}"
    );
    assert!(
        text.contains(r#"/properties/quantity/type: "integer" vs "string""#),
        "{text}"
    );
}

#[test]
fn one_service_replaces_its_own_registration() {
    let ours = [registration("Order", 1, "shop", order("string"))];
    let bus = [registration("Order", 1, "shop", order("integer"))];
    assert!(check_against(&ours, &bus).is_empty());
}

#[test]
fn breaking_changes_between_versions_are_named() {
    let v1 = normalize(&order("integer"));
    let mut v2 = order("number");
    v2["properties"].as_object_mut().unwrap().remove("id");
    v2["properties"]["coupon"] = json!({"type": "string"});
    v2["required"] = json!(["quantity", "address", "coupon"]);
    v2["$defs"]["Address"]["required"] = json!([]);
    let problems = incompatibilities(&v1, &normalize(&v2));
    let text = problems.join("\n");
    assert!(text.contains("required `id` was removed"), "{text}");
    assert!(
        text.contains("`quantity` changed type from integer to number"),
        "{text}"
    );
    assert!(text.contains("`coupon` is new and required"), "{text}");
    assert!(
        text.contains("`address.city` is no longer required"),
        "{text}"
    );
    assert_eq!(problems.len(), 4, "{text}");
}

#[test]
fn optional_fields_come_and_go_compatibly() {
    let v1 = order("integer");
    let mut v2 = order("integer");
    v2["properties"]["note"] = json!({"type": ["string", "null"]});
    assert!(incompatibilities(&normalize(&v1), &normalize(&v2)).is_empty());
    assert!(incompatibilities(&normalize(&v2), &normalize(&v1)).is_empty());
    let found = check(&[
        registration("Order", 1, "shop", v1),
        registration("Order", 2, "shop", v2),
    ]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn an_incompatible_version_is_a_finding_of_its_service() {
    let mut v2 = order("integer");
    v2["required"] = json!(["id", "quantity", "address", "coupon"]);
    v2["properties"]["coupon"] = json!({"type": "string"});
    let found = check(&[
        registration("Order", 1, "shop", order("integer")),
        registration("Order", 2, "checkout", v2),
    ]);
    assert_eq!(
        found,
        vec![SchemaFinding::Incompatible {
            id: "Order".into(),
            from: 1,
            to: 2,
            service: "checkout".into(),
            problems: vec![
                "`coupon` is new and required (messages of the old version lack it)".into()
            ],
        }]
    );
    assert!(!found[0].is_conflict());
}
