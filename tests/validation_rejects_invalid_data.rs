use std::time::Duration;

use kafkaesk::Error;
use kafkaesk_tests::{app_builder, read_all, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Signup {
    #[schemars(length(min = 3, max = 20))]
    pub name: String,
    #[schemars(range(min = 18))]
    pub age: u32,
    #[schemars(regex(pattern = r"^[a-z]+@[a-z]+\.[a-z]+$"))]
    pub email: String,
}

impl kafkaesk::Schema for Signup {
    const ID: &'static str = "Signup";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_data_is_rejected_with_field_and_rule_and_nothing_is_sent() {
    let prefix = unique_prefix("validation");
    let mut router = kafkaesk::Router::new();
    router.schema::<Signup>().unwrap();
    let app = app_builder(&prefix).mount(router).build().unwrap();

    let invalid = Signup {
        name: "al".into(),
        age: 12,
        email: "not-an-email".into(),
    };
    let err = app.publish_and_wait("signups", &invalid).await.unwrap_err();
    let Error::Validation { schema, issues } = &err else {
        panic!("expected a validation error, got {err:?}")
    };
    assert_eq!(schema, "Signup:1");
    let found: Vec<(&str, &str)> = issues
        .iter()
        .map(|i| (i.field.as_str(), i.rule.as_str()))
        .collect();
    assert!(found.contains(&("/name", "minLength")), "{found:?}");
    assert!(found.contains(&("/age", "minimum")), "{found:?}");
    assert!(found.contains(&("/email", "pattern")), "{found:?}");
    let text = err.to_string();
    assert!(
        text.contains("/name") && text.contains("minLength"),
        "{text}"
    );

    let valid = Signup {
        name: "alice".into(),
        age: 30,
        email: "alice@example.org".into(),
    };
    app.publish_and_wait("signups.ok", &valid).await.unwrap();
    assert!(read_all(&format!("{prefix}signups"), Duration::from_secs(2)).is_empty());
    assert_eq!(
        read_all(&format!("{prefix}signups.ok"), Duration::from_secs(2)).len(),
        1
    );
}
