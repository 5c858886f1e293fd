//! Hostile input against envelope decoding and dispatch, without a broker.
//!
//! Every input goes through `Subscription::handle_record` for each kind of
//! first parameter a handler can take. Whatever the bytes, the outcome must be
//! `Ok(())` (handled) or `Error::Unhandled` (counted and committed past by a
//! consumer): never a panic, a stack overflow, or memory out of proportion to
//! the input. Decoding is cross-checked against serde_json directly, so a
//! record is handled exactly when its envelope fits the handler's type.
//!
//! The proptest runs use a fixed seed, so `cargo test` runs the same cases
//! every time. `tests/corpus/envelope/*.bin` holds inputs worth keeping; each
//! file's name starts with the outcome the `#[schema]` handler must give.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kafkaesk::{Application, Error, Header, Headers, Json, Record, SchemaId, Subscription};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde::de::DeserializeOwned;
use serde_json::Value;

// --- allocation accounting -------------------------------------------------

/// Counts the bytes live on each thread, so one decode's peak can be measured
/// while other tests allocate on their own threads.
struct PerThreadCounting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// bookkeeping touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for PerThreadCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            account(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            account(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller's contract
        // for `realloc`, passed on unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: PerThreadCounting = PerThreadCounting;

/// Runs `f` and returns its result with the most bytes it had allocated at once.
fn peak_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, (peak - start).max(0) as usize)
}

/// Decoding may build a `serde_json::Value` and copy the record; both are
/// linear in the input. Anything beyond this is a leak or an amplification.
fn allocation_bound(input_len: usize) -> usize {
    64 * input_len + 256 * 1024
}

/// Serde errors quote offending strings, so a reason may grow with the input,
/// but only linearly (Debug escaping at most multiplies it by a constant).
fn reason_bound(input_len: usize) -> usize {
    10 * input_len + 512
}

// --- the handlers ------------------------------------------------------------

#[kafkaesk::schema("Fuzz", version = 1)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Fuzz {
    pub n: u32,
    pub s: String,
    #[serde(default)]
    pub tags: Vec<u64>,
}

/// A schema implemented by hand rather than with the attribute.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Audit {
    pub action: Action,
    pub at: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create { id: u64 },
    Delete(u64),
    Touch,
}

impl kafkaesk::Schema for Audit {
    const ID: &'static str = "Audit";
    const VERSION: u32 = 2;
}

/// Not a schema: reached only through `Json<T>`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Partial {
    pub s: String,
}

type Slot<T> = Arc<Mutex<Option<T>>>;

/// A subscription whose handler stores what it was given in a slot.
macro_rules! recording {
    ($slot:ident, |$($arg:ident : $ty:ty),+| $value:expr) => {{
        let sink = $slot.clone();
        Subscription::new("fuzz", move |$($arg: $ty),+| {
            let sink = sink.clone();
            async move {
                *sink.lock().unwrap() = Some($value);
            }
        })
    }};
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Application,
    typed: (Subscription, Slot<Fuzz>),
    by_hand: (Subscription, Slot<Audit>),
    with_id: (Subscription, Slot<(Fuzz, SchemaId)>),
    json: (Subscription, Slot<Partial>),
    value: (Subscription, Slot<Value>),
    bytes: (Subscription, Slot<Vec<u8>>),
    record: (Subscription, Slot<Record>),
}

impl Harness {
    fn new() -> Self {
        let typed = Slot::default();
        let by_hand = Slot::default();
        let with_id = Slot::default();
        let json = Slot::default();
        let value = Slot::default();
        let bytes = Slot::default();
        let record = Slot::default();
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
            // No servers: handle_record never needs a broker.
            app: Application::builder().build().unwrap(),
            typed: (recording!(typed, |d: Fuzz| d), typed),
            by_hand: (recording!(by_hand, |d: Audit| d), by_hand),
            with_id: (
                recording!(with_id, |d: Fuzz, id: SchemaId| (d, id)),
                with_id,
            ),
            json: (recording!(json, |d: Json<Partial>| d.0), json),
            value: (recording!(value, |d: Value| d), value),
            bytes: (recording!(bytes, |d: Vec<u8>| d), bytes),
            record: (recording!(record, |d: Record| d), record),
        }
    }

    /// Runs one handler on `record` and checks the outcome against `expected`:
    /// `Some` is what the handler must receive, `None` means unhandled.
    fn expect<T: PartialEq + Debug>(
        &self,
        kind: &str,
        (subscription, slot): &(Subscription, Slot<T>),
        record: &Record,
        expected: Option<T>,
    ) {
        let len = record.value().len() + record.key().map_or(0, <[u8]>::len);
        let (result, peak) = peak_allocation(|| {
            self.runtime
                .block_on(subscription.handle_record(&self.app, record.clone()))
        });
        assert!(
            peak <= allocation_bound(len),
            "{kind}: {peak} bytes allocated for a {len}-byte record"
        );
        let got = slot.lock().unwrap().take();
        match (result, expected) {
            (Ok(()), Some(want)) => assert_eq!(got.as_ref(), Some(&want), "{kind}"),
            (Err(Error::Unhandled { position, reason }), None) => {
                assert_eq!(position, record.position(), "{kind}");
                assert!(!reason.is_empty(), "{kind}: empty reason");
                assert!(
                    reason.len() <= reason_bound(len),
                    "{kind}: a {}-byte reason for a {len}-byte record",
                    reason.len()
                );
                assert!(got.is_none(), "{kind}: unhandled, yet the handler ran");
            }
            (result, expected) => panic!(
                "{kind}: got {result:?}, expected {} for {:?}",
                if expected.is_some() {
                    "handled"
                } else {
                    "unhandled"
                },
                String::from_utf8_lossy(record.value())
            ),
        }
    }

    /// Every handler kind on one record. Returns whether the `#[schema]`
    /// handler took it.
    fn check(&self, record: &Record) -> bool {
        let bytes = record.value();
        let fuzz = data_of::<Fuzz>(bytes);
        let schema_key = serde_json::from_slice::<SchemaOnly>(bytes)
            .ok()
            .and_then(|e| e.schema);
        self.expect("#[schema] type", &self.typed, record, fuzz.clone());
        self.expect("hand-written Schema", &self.by_hand, record, data_of(bytes));
        self.expect(
            "#[schema] type + SchemaId",
            &self.with_id,
            record,
            fuzz.clone().zip(schema_key.map(SchemaId)),
        );
        self.expect("Json<T>", &self.json, record, data_of(bytes));
        self.expect(
            "serde_json::Value",
            &self.value,
            record,
            serde_json::from_slice(bytes).ok(),
        );
        self.expect("Vec<u8>", &self.bytes, record, Some(bytes.to_vec()));
        let (subscription, slot) = &self.record;
        let (result, _) = peak_allocation(|| {
            self.runtime
                .block_on(subscription.handle_record(&self.app, record.clone()))
        });
        assert!(result.is_ok(), "Record: {result:?}");
        let got = slot.lock().unwrap().take().expect("Record handler ran");
        assert_eq!(got.value(), record.value());
        assert_eq!(got.key(), record.key());
        assert_eq!(got.headers(), record.headers());
        assert_eq!(got.position(), record.position());
        fuzz.is_some()
    }
}

/// The envelope as the wire format defines it, decoded here independently.
#[derive(serde::Deserialize)]
struct Envelope<T> {
    #[allow(dead_code)]
    schema: Option<String>,
    data: T,
}

#[derive(serde::Deserialize)]
struct SchemaOnly {
    schema: Option<String>,
}

fn data_of<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice::<Envelope<T>>(bytes)
        .ok()
        .map(|e| e.data)
}

fn record(value: Option<Vec<u8>>) -> Record {
    Record::new("fuzz", 3, 42, None, value, Headers::new(), Some(0))
}

fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/envelope");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "bin"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

// --- generators ----------------------------------------------------------------

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..12)
            .prop_map(|cs| serde_json::to_string(&cs.into_iter().collect::<String>()).unwrap()),
        Just(r#""\ud800""#.to_owned()),
        Just(r#""\u0000""#.to_owned()),
        Just(r#""seven""#.to_owned()),
    ]
}

fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..100).prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        (1usize..2_000).prop_map(|digits| "9".repeat(digits)),
        Just("1e999999999".to_owned()),
        Just("-1e-999999999".to_owned()),
        Just("4294967296".to_owned()),
        Just("-0".to_owned()),
        Just("1.".to_owned()),
        Just("01".to_owned()),
        Just("NaN".to_owned()),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""n""#.to_owned()),
        Just(r#""s""#.to_owned()),
        Just(r#""tags""#.to_owned()),
        Just(r#""schema""#.to_owned()),
        Just(r#""data""#.to_owned()),
        Just(r#""action""#.to_owned()),
        Just(r#""at""#.to_owned()),
        Just(r#""create""#.to_owned()),
        Just(r#""id""#.to_owned()),
        json_string(),
    ]
}

fn object(fields: Vec<(String, String)>) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", body.join(","))
}

/// JSON text, mostly well-formed, with the field names the handlers look for.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        json_number(),
        json_string(),
        Just(r#""touch""#.to_owned()),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec((json_key(), inner), 0..8).prop_map(object),
        ]
    })
}

/// Data that fits one of the schemas, or nearly does.
fn plausible_data() -> impl Strategy<Value = String> {
    let fuzz = (
        prop_oneof![json_number(), json_string(), Just("null".to_owned())],
        prop_oneof![json_string(), json_number()],
        proptest::option::of(json_value()),
        any::<bool>(),
    )
        .prop_map(|(n, s, tags, dup)| {
            let mut fields = vec![(r#""n""#.to_owned(), n), (r#""s""#.to_owned(), s)];
            if let Some(tags) = tags {
                fields.push((r#""tags""#.to_owned(), tags));
            }
            if dup {
                fields.push(fields[0].clone());
            }
            object(fields)
        });
    let valid_fuzz = (
        any::<u32>(),
        json_string(),
        proptest::collection::vec(any::<u64>(), 0..4),
    )
        .prop_map(|(n, s, tags)| format!(r#"{{"n":{n},"s":{s},"tags":{tags:?}}}"#));
    let audit = (
        prop_oneof![
            any::<u64>().prop_map(|id| format!(r#"{{"create":{{"id":{id}}}}}"#)),
            json_number().prop_map(|id| format!(r#"{{"delete":{id}}}"#)),
            Just(r#""touch""#.to_owned()),
            json_value(),
        ],
        prop_oneof![json_number(), Just("null".to_owned())],
    )
        .prop_map(|(action, at)| format!(r#"{{"action":{action},"at":{at}}}"#));
    prop_oneof![3 => valid_fuzz, 1 => fuzz, 1 => audit, 1 => json_value()]
}

fn schema_key() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![
            Just(r#""Fuzz:1""#.to_owned()),
            Just(r#""Fuzz:2""#.to_owned()),
            Just(r#""Audit:2""#.to_owned()),
            Just(r#""Unknown:7""#.to_owned()),
            Just(r#""Fuzz:99999999999999999999999""#.to_owned()),
            Just(r#""""#.to_owned()),
            json_string(),
            json_value(),
        ],
    )
}

/// An envelope: schema key and data each present or not, extra and
/// duplicate keys, in any order.
fn envelope() -> impl Strategy<Value = Vec<u8>> {
    (
        schema_key(),
        proptest::option::weighted(0.9, plausible_data()),
        proptest::collection::vec((json_key(), json_value()), 0..3),
        proptest::option::weighted(0.2, any::<Index>()),
        any::<bool>(),
    )
        .prop_map(|(schema, data, extra, duplicate, data_first)| {
            let mut fields = Vec::new();
            if let Some(schema) = schema {
                fields.push((r#""schema""#.to_owned(), schema));
            }
            if let Some(data) = data {
                let field = (r#""data""#.to_owned(), data);
                if data_first {
                    fields.insert(0, field);
                } else {
                    fields.push(field);
                }
            }
            fields.extend(extra);
            if let (Some(at), false) = (duplicate, fields.is_empty()) {
                let copy = fields[at.index(fields.len())].clone();
                fields.push(copy);
            }
            object(fields).into_bytes()
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Overwrite(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let hostile_bytes = prop_oneof![
        Just(vec![0xff]),
        Just(vec![0xc0, 0x80]),
        Just(vec![0xed, 0xa0, 0x80]),
        Just(vec![0xf4, 0x90, 0x80, 0x80]),
        Just(vec![0x00]),
        Just(b"\"".to_vec()),
        Just(b"[".to_vec()),
        Just(b"{".to_vec()),
        Just(b"\\".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        (any::<Index>(), hostile_bytes).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match m {
            Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
            Mutation::Overwrite(i, b) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Insert(i, b) => {
                let i = at(i, bytes.len()).min(bytes.len());
                bytes.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i.index(bytes.len()));
            }
            _ => {}
        }
    }
    bytes
}

fn headers() -> impl Strategy<Value = Headers> {
    proptest::collection::vec(
        (
            proptest::collection::vec(any::<char>(), 0..6),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        ),
        0..3,
    )
    .prop_map(|hs| {
        let mut headers = Headers::new();
        for (key, value) in hs {
            headers.push(Header {
                key: key.into_iter().collect(),
                value,
            });
        }
        headers
    })
}

// --- the tests -------------------------------------------------------------------

#[test]
fn corpus_entries_end_as_their_names_say() {
    let harness = Harness::new();
    let corpus = corpus();
    assert!(corpus.len() >= 20, "the corpus went missing: {corpus:?}");
    for (name, bytes) in corpus {
        let handled = harness.check(&record(Some(bytes)));
        let expected = name.starts_with("handled-");
        assert!(
            expected || name.starts_with("unhandled-"),
            "{name}: name it handled-* or unhandled-*"
        );
        assert_eq!(handled, expected, "{name}");
    }
}

#[test]
fn arbitrary_bytes_keys_and_headers_are_handled_or_unhandled() {
    let harness = Harness::new();
    let input = (
        proptest::option::weighted(0.95, proptest::collection::vec(any::<u8>(), 0..1024)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        headers(),
    );
    TestRunner::new(config(5_000, 0x6b61_666b_6165_736b))
        .run(&input, |(value, key, headers)| {
            harness.check(&Record::new("fuzz", 0, 7, key, value, headers, None));
            Ok(())
        })
        .unwrap();
}

#[test]
fn generated_envelopes_are_handled_exactly_when_data_fits() {
    let harness = Harness::new();
    let input = (
        envelope(),
        proptest::collection::vec(mutation(), 0..3),
        proptest::bool::weighted(0.3),
    );
    let handled = Cell::new(0u32);
    TestRunner::new(config(10_000, 0x656e_7665_6c6f_7065))
        .run(&input, |(bytes, mutations, mutated)| {
            let bytes = if mutated {
                mutate(bytes, &mutations)
            } else {
                bytes
            };
            if harness.check(&record(Some(bytes))) {
                handled.set(handled.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    // Both outcomes must be exercised, or the generator has gone blind.
    eprintln!("{} of 10000 envelopes handled", handled.get());
    assert!(
        (500..9_500).contains(&handled.get()),
        "{} of 10000 envelopes handled",
        handled.get()
    );
}

#[test]
fn mutated_corpus_entries_are_handled_or_unhandled() {
    let harness = Harness::new();
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, bytes)| bytes).collect();
    let input = (
        proptest::sample::select(seeds),
        proptest::collection::vec(mutation(), 1..6),
    );
    TestRunner::new(config(5_000, 0x636f_7270_7573))
        .run(&input, |(bytes, mutations)| {
            harness.check(&record(Some(mutate(bytes, &mutations))));
            Ok(())
        })
        .unwrap();
}

/// serde_json stops at 128 levels; nothing on the way there or around it may
/// recurse per level. Run on a thread with a fixed, ordinary stack so the
/// result does not depend on RUST_MIN_STACK.
#[test]
fn hundred_thousand_levels_of_nesting_do_not_overflow_the_stack() {
    const DEPTH: usize = 100_000;
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let harness = Harness::new();
            let arrays = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
            let objects = format!("{}1{}", r#"{"a":"#.repeat(DEPTH), "}".repeat(DEPTH));
            let cases = [
                ("bare arrays", arrays.clone()),
                ("unclosed arrays", "[".repeat(DEPTH)),
                ("bare objects", objects.clone()),
                (
                    "arrays as data",
                    format!(r#"{{"schema":"Fuzz:1","data":{arrays}}}"#),
                ),
                (
                    "objects as data",
                    format!(r#"{{"schema":"Fuzz:1","data":{objects}}}"#),
                ),
                (
                    "arrays in an ignored field",
                    format!(r#"{{"schema":"Fuzz:1","data":{{"n":1,"s":"x","extra":{arrays}}}}}"#),
                ),
                (
                    "objects in an ignored envelope field",
                    format!(r#"{{"schema":"Fuzz:1","x":{objects},"data":{{"n":1,"s":"x"}}}}"#),
                ),
                (
                    "arrays in tags",
                    format!(r#"{{"schema":"Fuzz:1","data":{{"n":1,"s":"x","tags":{arrays}}}}}"#),
                ),
                (
                    "arrays as the schema key",
                    format!(r#"{{"schema":{arrays},"data":{{"n":1,"s":"x"}}}}"#),
                ),
            ];
            for (what, text) in cases {
                let record = record(Some(text.into_bytes()));
                let handled = harness.check(&record);
                // Only skipped fields may be arbitrarily deep; the rest is unhandled.
                assert_eq!(handled, what.contains("ignored"), "{what}");
            }
        })
        .unwrap()
        .join()
        .expect("deep nesting crashed the decoding thread");
}

/// A large message costs memory in proportion to its size and no more.
#[test]
fn large_messages_allocate_in_proportion_to_their_size() {
    let harness = Harness::new();
    let numbers = vec!["1"; 250_000].join(",");
    let keys: Vec<String> = (0..50_000).map(|i| format!(r#""k{i}":0"#)).collect();
    let long_string = "x".repeat(1 << 20);
    let cases = [
        format!(r#"{{"schema":"Fuzz:1","data":{{"n":1,"s":"x","tags":[{numbers}]}}}}"#),
        format!(
            r#"{{"schema":"Fuzz:1","data":{{"n":1,"s":"x","extra":{{{}}}}}}}"#,
            keys.join(",")
        ),
        format!(r#"{{"schema":"Fuzz:1","data":{{"n":1,"s":"{long_string}"}}}}"#),
        // A long string where a number belongs: its error quotes the string.
        format!(r#"{{"schema":"Fuzz:1","data":{{"n":"{long_string}","s":"x"}}}}"#),
        format!(r#"{{"schema":"Audit:2","data":{{"action":"{long_string}"}}}}"#),
    ];
    for text in cases {
        harness.check(&record(Some(text.into_bytes())));
    }
}

/// The bound above means something only if the meter sees what decoding allocates.
#[test]
fn the_allocation_meter_sees_a_decode_that_builds_a_large_value() {
    let harness = Harness::new();
    let text = format!("[{}]", vec!["0"; 100_000].join(","));
    let (_, peak) = peak_allocation(|| {
        harness.runtime.block_on(
            harness
                .value
                .0
                .handle_record(&harness.app, record(Some(text.into_bytes()))),
        )
    });
    // 100,000 `Value::Number`s of at least 16 bytes each.
    assert!(peak >= 1_600_000, "only {peak} bytes seen");
}

#[test]
fn tombstones_and_empty_values_are_unhandled_for_decoding_handlers() {
    let harness = Harness::new();
    for value in [None, Some(Vec::new())] {
        assert!(!harness.check(&record(value)));
    }
}

/// The reason is logged for every unhandled record, so it describes the
/// problem without carrying the message: a 1 MiB string where a number
/// belongs must not be quoted into the logs.
#[test]
fn unhandled_reasons_stay_short_whatever_the_message_size() {
    let harness = Harness::new();
    let long_string = "x".repeat(1 << 20);
    let text = format!(r#"{{"schema":"Fuzz:1","data":{{"n":"{long_string}","s":"x"}}}}"#);
    let result = harness.runtime.block_on(
        harness
            .typed
            .0
            .handle_record(&harness.app, record(Some(text.into_bytes()))),
    );
    let Err(Error::Unhandled { reason, .. }) = result else {
        panic!("{result:?}")
    };
    assert!(reason.len() <= 1024, "a {}-byte reason", reason.len());
}
