//! Unit tests of records and headers.

use super::*;

#[test]
fn headers_keep_order_repeats_and_nulls() {
    let mut headers = Headers::new().with("a", "1").with("a", "2");
    headers.push(Header {
        key: "n".into(),
        value: None,
    });
    headers.insert("bin", [0xff, 0x00]);
    assert_eq!(headers.get("a"), Some(&b"1"[..]));
    assert_eq!(headers.get("n"), None);
    assert_eq!(headers.get("bin"), Some(&[0xff, 0x00][..]));
    assert_eq!(headers.len(), 4);
}
