//! Per-message overhead without a broker (issue scenario 3): kafkaesk's decode
//! and dispatch next to plain serde_json decoding of the same bytes, and its
//! validated encoding next to plain serde_json encoding.
//!
//! `cargo bench -p kafkaesk-bench --bench dispatch`
//!
//! The dispatch path is the library's `Subscription::handle_record`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafkaesk::schema::SchemaInfo;
use kafkaesk_bench::micro::{kafkaesk_encode, plain_decode, plain_encode, Dispatch};
use kafkaesk_bench::{envelope_bytes, Bench};

fn consume_side(c: &mut Criterion) {
    let data = Bench::sample(123_456);
    let bytes = envelope_bytes(&data);
    let dispatch = Dispatch::new();
    let mut group = c.benchmark_group("consume");
    group.throughput(Throughput::Elements(1));
    group.bench_function("serde_json::from_slice (limit)", |b| {
        b.iter(|| plain_decode(black_box(&bytes)))
    });
    let mut offset = 0i64;
    group.bench_function("kafkaesk decode + dispatch ", |b| {
        b.iter(|| {
            offset += 1;
            dispatch.dispatch(black_box(&bytes), offset)
        })
    });
    group.finish();
}

fn publish_side(c: &mut Criterion) {
    let data = Bench::sample(123_456);
    let info = SchemaInfo::of::<Bench>().expect("the Bench schema compiles");
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Elements(1));
    group.bench_function("serde_json::to_vec (limit)", |b| {
        b.iter(|| plain_encode(black_box(&data)))
    });
    group.bench_function("kafkaesk encode + validate", |b| {
        b.iter(|| kafkaesk_encode(&info, black_box(&data)))
    });
    group.finish();
}

criterion_group!(benches, consume_side, publish_side);
criterion_main!(benches);
