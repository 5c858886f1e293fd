//! Unit tests of validation while serializing, held to `jsonschema`'s verdicts.

use std::collections::BTreeMap;

use proptest::prelude::*;
use schemars::JsonSchema;
use serde::Serialize;

use super::*;

#[derive(Serialize, JsonSchema, Debug, Clone)]
struct Inner {
    #[schemars(range(min = -5, max = 5))]
    level: i32,
    label: Option<String>,
}

#[derive(Serialize, JsonSchema, Debug, Clone)]
enum Color {
    Red,
    Green,
    Blue,
}

#[derive(Serialize, JsonSchema, Debug, Clone)]
struct Sample {
    #[schemars(length(min = 2, max = 5))]
    name: String,
    #[schemars(range(min = 1.5, max = 100.0))]
    score: f64,
    ratio: f32,
    count: u8,
    big: u64,
    signed: i64,
    tags: Vec<String>,
    #[schemars(length(min = 1, max = 3))]
    few: Vec<i16>,
    inner: Inner,
    maybe_inner: Option<Inner>,
    by_name: BTreeMap<String, Inner>,
    color: Color,
    maybe: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    flag: bool,
    letter: char,
    nothing: (),
}

fn compiled<T: JsonSchema>() -> (Option<Plan>, jsonschema::Validator) {
    let schema = schemars::schema_for!(T).to_value();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    (Plan::compile(&schema), validator)
}

fn inner() -> impl Strategy<Value = Inner> {
    (-8i32..8, proptest::option::of("[a-z]{0,3}")).prop_map(|(level, label)| Inner { level, label })
}

fn sample() -> impl Strategy<Value = Sample> {
    let floats = prop_oneof![
        0.0f64..120.0,
        Just(1.5),
        Just(100.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
    ];
    let bigs = prop_oneof![
        0u64..100,
        Just(1u64 << 53),
        Just((1u64 << 53) + 1),
        Just(u64::MAX)
    ];
    (
        (
            "\\PC{0,7}",
            floats,
            any::<f32>(),
            any::<u8>(),
            bigs,
            any::<i64>(),
        ),
        (
            proptest::collection::vec("[a-z]{0,4}", 0..3),
            proptest::collection::vec(any::<i16>(), 0..5),
            inner(),
            proptest::option::of(inner()),
            proptest::collection::btree_map("[a-c]{1,2}", inner(), 0..3),
        ),
        (
            prop_oneof![Just(Color::Red), Just(Color::Green), Just(Color::Blue)],
            proptest::option::of(any::<u16>()),
            proptest::option::of("[a-z]{0,3}"),
            any::<bool>(),
            any::<char>(),
        ),
    )
        .prop_map(
            |(
                (name, score, ratio, count, big, signed),
                (tags, few, inner, maybe_inner, by_name),
                (color, maybe, skipped, flag, letter),
            )| Sample {
                name,
                score,
                ratio,
                count,
                big,
                signed,
                tags,
                few,
                inner,
                maybe_inner,
                by_name,
                color,
                maybe,
                skipped,
                flag,
                letter,
                nothing: (),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The plan passes exactly what jsonschema passes (except where it is
    /// allowed to be unsure), and writes serde_json's own bytes.
    #[test]
    fn the_plan_agrees_with_jsonschema(data in sample()) {
        let (plan, validator) = compiled::<Sample>();
        let plan = plan.expect("every keyword of Sample's schema is covered");
        let mut out = Vec::new();
        let passed = plan.write(&data, &mut out).is_ok();
        let valid = validator.is_valid(&serde_json::to_value(&data).unwrap());
        prop_assert!(!passed || valid, "the plan passed invalid data: {data:?}");
        let unsure = data.big > 1 << 53 || !data.ratio.is_finite();
        if valid && !unsure {
            prop_assert!(passed, "the plan refused valid data: {data:?}");
        }
        if passed {
            prop_assert_eq!(out, serde_json::to_vec(&data).unwrap());
        }
    }
}

#[test]
fn lengths_count_code_points_whatever_the_bytes() {
    let between = |min, max| Checks {
        min_length: min,
        max_length: max,
        ..Checks::default()
    };
    let fits = |checks: &Checks, s: &str| checks.accepts(Scalar::Str(s));
    // "é" is 2 bytes, "日本" 6, "😀😀" 8: each fewer characters than bytes.
    assert!(!fits(&between(Some(2), None), "é"));
    assert!(fits(&between(Some(2), None), "日本"));
    assert!(fits(&between(None, Some(2)), "日本"));
    assert!(fits(&between(None, Some(2)), "😀😀"));
    assert!(!fits(&between(None, Some(1)), "😀😀"));
    assert!(fits(&between(Some(1), Some(1)), "😀"));
    assert!(!fits(&between(Some(3), Some(5)), "ab"));
    assert!(!fits(&between(Some(3), Some(5)), "abcdef"));
    assert!(fits(&between(Some(3), Some(5)), "aéb"));
}

#[test]
fn unsupported_keywords_leave_the_schema_to_jsonschema() {
    #[derive(Serialize, JsonSchema)]
    struct Pattern {
        #[schemars(regex(pattern = "^a+$"))]
        a: String,
    }
    #[derive(Serialize, JsonSchema)]
    struct Email {
        #[schemars(email)]
        a: String,
    }
    #[derive(Serialize, JsonSchema)]
    #[allow(dead_code)]
    enum WithData {
        A(u8),
        B { x: String },
    }
    #[derive(Serialize, JsonSchema)]
    struct Tuple(u8, String);
    assert!(compiled::<Pattern>().0.is_none());
    assert!(compiled::<Email>().0.is_none());
    assert!(compiled::<WithData>().0.is_none());
    assert!(compiled::<Tuple>().0.is_none());
    assert!(compiled::<Sample>().0.is_some());
}

#[test]
fn recursive_types_compile_and_check() {
    #[derive(Serialize, JsonSchema)]
    struct Tree {
        #[schemars(length(max = 3))]
        name: String,
        children: Vec<Tree>,
    }
    let (plan, _) = compiled::<Tree>();
    let plan = plan.expect("a recursive type is covered");
    let leaf = |name: &str| Tree {
        name: name.into(),
        children: vec![],
    };
    let good = Tree {
        name: "a".into(),
        children: vec![leaf("b"), leaf("c")],
    };
    let bad = Tree {
        name: "a".into(),
        children: vec![leaf("b"), leaf("too long")],
    };
    assert!(plan.write(&good, &mut Vec::new()).is_ok());
    assert!(plan.write(&bad, &mut Vec::new()).is_err());
}

#[test]
fn refs_that_only_point_at_each_other_do_not_loop() {
    let schema = serde_json::json!({
        "$ref": "#/$defs/a",
        "$defs": { "a": { "$ref": "#/$defs/b" }, "b": { "$ref": "#/$defs/a" } }
    });
    let plan = Plan::compile(&schema).expect("compiles");
    assert!(plan.write(&1, &mut Vec::new()).is_err());
}
