//! Two `#[subscribe]` functions with one name in different modules would
//! share a consumer group, counters and health: building an application from
//! the registry refuses them, naming both. Its own test binary, so the
//! registry holds only these.

mod a {
    #[kafkaesk::subscribe("a.*")]
    pub async fn index(_: Vec<u8>) {}
}

mod b {
    #[kafkaesk::subscribe("b.*")]
    pub async fn index(_: Vec<u8>) {}
}

mod c {
    #[kafkaesk::subscribe("c.*", name = "c-index")]
    pub async fn index(_: Vec<u8>) {}
}

#[test]
fn two_handlers_with_one_name_are_an_error_at_build() {
    let err = kafkaesk::Application::builder()
        .with_registry()
        .unwrap()
        .build()
        .unwrap_err();
    let kafkaesk::Error::DuplicateSubscription {
        name,
        first,
        second,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(name, "index");
    let mut streams = [first.as_str(), second.as_str()];
    streams.sort();
    assert_eq!(streams, ["a.*", "b.*"]);
    assert!(err.to_string().contains("name = "), "{err}");
    // `name = "..."` is how one of them gets out of the way.
    let names: Vec<String> = kafkaesk::Router::from_registry()
        .unwrap()
        .subscriptions()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    assert!(names.contains(&"c-index".to_owned()), "{names:?}");
}

#[test]
fn closures_without_names_collide_too() {
    let err = kafkaesk::Application::builder()
        .subscribe(kafkaesk::Subscription::new("x", |_: Vec<u8>| async {}))
        .subscribe(kafkaesk::Subscription::new("y", |_: Vec<u8>| async {}).with_group("other"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, kafkaesk::Error::DuplicateSubscription { .. }),
        "{err}"
    );
    kafkaesk::Application::builder()
        .subscribe(kafkaesk::Subscription::new("x", |_: Vec<u8>| async {}).with_name("x"))
        .subscribe(kafkaesk::Subscription::new("y", |_: Vec<u8>| async {}).with_name("y"))
        .build()
        .unwrap();
}
