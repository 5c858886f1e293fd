//! Unit tests of subscriptions, routers and stream patterns.

use super::*;
use crate::schema::Schema;

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct A {
    x: i32,
}
impl Schema for A {
    const ID: &'static str = "Thing";
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct B {
    y: i32,
}
impl Schema for B {
    const ID: &'static str = "Thing";
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct B2 {
    y: i32,
}
impl Schema for B2 {
    const ID: &'static str = "Thing";
    const VERSION: u32 = 2;
}

async fn on_a(_: A) {}

#[test]
fn exactly_once_refuses_background_retries_but_not_skips_or_dead_letters() {
    let retrying = Subscription::new("a", on_a)
        .exactly_once()
        .on_error(ErrorPolicy::retry(3, Duration::from_millis(10)));
    let err = retrying.validate().unwrap_err();
    assert!(err.to_string().contains("exactly-once"), "{err}");
    for policy in [ErrorPolicy::skip(), ErrorPolicy::dead_letter("dead")] {
        let sub = Subscription::new("a", on_a).exactly_once().on_error(policy);
        assert!(sub.validate().is_ok());
    }
    assert!(!Subscription::new("a", on_a).is_exactly_once());
}

#[test]
fn topic_lists_become_one_anchored_alternation() {
    let re = Streams::List(vec!["a.b".into(), "c".into()]).regex("p.");
    assert_eq!(re, r"^(p\.a\.b|p\.c)$");
    let re = regex::Regex::new(&re).unwrap();
    assert!(re.is_match("p.a.b") && re.is_match("p.c"));
    assert!(!re.is_match("p.axb") && !re.is_match("p.cd"));
    let list = Streams::List(vec!["a.b".into(), "c".into()]);
    assert!(list.matches_topic("p.", "p.c") && !list.matches_topic("p.", "p.cd"));
}

#[test]
fn same_key_twice_is_a_conflict_naming_both_types() {
    let mut router = Router::new();
    router.schema::<A>().unwrap();
    router.schema::<A>().unwrap();
    let err = router.schema::<B>().unwrap_err();
    let Error::SchemaConflict { key, existing, new } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(key, "Thing:1");
    assert!(existing.ends_with("::A") && new.ends_with("::B"), "{err}");
    router.schema::<B2>().unwrap();
}

#[test]
fn mount_detects_conflicts_across_routers() {
    let mut a = Router::new();
    a.schema::<A>().unwrap();
    let mut b = Router::new();
    b.schema::<B>().unwrap();
    assert!(matches!(a.mount(b), Err(Error::SchemaConflict { .. })));
}

async fn generic<T: crate::handling::FromMessage>(_: T) {}

#[test]
fn default_names_are_the_function_name_without_generics_or_closures() {
    assert_eq!(Subscription::new("a", generic::<Vec<u8>>).name(), "generic");
    let closure = Subscription::new("a", |_: Vec<u8>| async {});
    assert_eq!(
        closure.name(),
        "default_names_are_the_function_name_without_generics_or_closures::closure"
    );
    assert_eq!(handler_name_of("c::m::index<c::Foo<u8>>"), "index");
    assert_eq!(
        handler_name_of("c::main::{{closure}}::{{closure}}"),
        "main::closure"
    );
}

#[test]
fn two_subscriptions_with_one_name_are_refused() {
    let mut router = Router::new();
    router.subscribe(Subscription::new("a.*", on_a));
    router.subscribe(Subscription::new("b.*", on_a).with_group("other"));
    let err = router.validate().unwrap_err();
    let Error::DuplicateSubscription {
        name,
        first,
        second,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (name.as_str(), first.as_str(), second.as_str()),
        ("on_a", "a.*", "b.*")
    );
    assert!(err.to_string().contains("name"), "{err}");
    router.subscriptions.pop();
    router.subscribe(Subscription::new("b.*", on_a).with_name("on_a_again"));
    router.validate().unwrap();
}

#[test]
fn subscription_defaults_to_function_name_group() {
    let sub = Subscription::new("a.*", on_a);
    assert_eq!(sub.name(), "on_a");
    assert_eq!(sub.group(), Some("on_a"));
    assert!(Subscription::new("a", on_a)
        .with_concurrency(0)
        .validate()
        .is_err());
}
