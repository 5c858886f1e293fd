//! Which partition a message goes to.
//!
//! By default a keyed message goes where the Java client and aiokafka (under
//! Python kafkaesk) put it: murmur2 of the key, as a positive number, modulo
//! the partition count. A Python kafkaesk service and a Rust one that publish
//! the same key to the same topic reach the same partition, so per-key order
//! holds between them. Messages without a key are spread at random.
//! librdkafka's own default (`consistent_random`, CRC32) would put most keys
//! elsewhere; kafkaesk sets `partitioner=murmur2_random` unless
//! `kafka_settings` choose another.
//!
//! A publish can also name its partition, or choose a [`Partitioner`].

use std::fmt;
use std::sync::Arc;

/// How a publish picks its partition. The default, [`Partitioner::ByKey`],
/// is the Java client's.
///
/// ```
/// use kafkaesk::publish::Partitioner;
/// // Every message of a tenant on one partition, whatever its key.
/// let by_tenant = Partitioner::custom(|key, partitions| {
///     let tenant = key.and_then(|k| k.first()).copied().unwrap_or(0);
///     i32::from(tenant) % partitions
/// });
/// # let _ = by_tenant;
/// ```
#[derive(Clone, Default)]
pub enum Partitioner {
    /// murmur2 of the key, as the Java client and aiokafka; keyless
    /// messages at random.
    #[default]
    ByKey,
    /// Each partition in turn, key or not.
    RoundRobin,
    /// A function of the key and the partition count that returns the
    /// partition; a result outside `0..count` fails the publish.
    Custom(PickPartition),
}

/// A custom partitioner: the key (if any) and the partition count give the
/// partition.
pub type PickPartition = Arc<dyn Fn(Option<&[u8]>, i32) -> i32 + Send + Sync>;

impl Partitioner {
    /// A [`Partitioner::Custom`] from a function of the key and the
    /// partition count.
    pub fn custom(pick: impl Fn(Option<&[u8]>, i32) -> i32 + Send + Sync + 'static) -> Self {
        Partitioner::Custom(Arc::new(pick))
    }
}

impl fmt::Debug for Partitioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partitioner::ByKey => f.write_str("ByKey"),
            Partitioner::RoundRobin => f.write_str("RoundRobin"),
            Partitioner::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The partition the Java client, aiokafka and kafkaesk give `key` among
/// `partitions`: murmur2 of the key, its sign bit cleared, modulo the count.
///
/// ```
/// assert_eq!(kafkaesk::publish::key_partition(b"order-1", 7), 4);
/// ```
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    // Both operands are non-negative and the count fits in an i32.
    (positive % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`, seed `0x9747b28c`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if let Some(&first) = rest.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Keys, `murmur2(key) & 0x7fffffff`, and the partition among 7 and 12, as
/// aiokafka 0.14's `aiokafka.partitioner.murmur2` computes them: an
/// implementation independent of ours. Shared with the integration test.
#[doc(hidden)]
pub const AIOKAFKA_MURMUR2: &[(&[u8], u32, i32, i32)] = &[
    (b"order-0", 864626956, 4, 4),
    (b"order-1", 1221710326, 4, 10),
    (b"order-2", 1091984643, 1, 3),
    (b"order-3", 1297899999, 4, 3),
    (b"order-4", 1928061674, 0, 2),
    (b"order-5", 847857254, 6, 2),
    (b"order-6", 1512516609, 2, 9),
    (b"order-7", 323129857, 1, 1),
    (b"order-8", 158988461, 2, 5),
    (b"order-9", 167917714, 6, 10),
    (b"order-10", 1960481346, 5, 6),
    (b"order-11", 1890122214, 1, 6),
    (b"order-12", 1734275647, 6, 7),
    (b"order-13", 212879345, 0, 5),
    (b"order-14", 2028795802, 5, 10),
    (b"order-15", 690290596, 2, 4),
    (b"order-16", 74110824, 4, 0),
    (b"order-17", 1568318961, 6, 9),
    (b"order-18", 1639752299, 3, 11),
    (b"order-19", 342465195, 2, 3),
    (b"order-20", 253191451, 2, 7),
    (b"order-21", 1512664580, 0, 8),
    (b"order-22", 731073993, 6, 9),
    (b"order-23", 1730847647, 4, 11),
    (b"order-24", 696470886, 6, 6),
    (b"order-25", 1625616266, 1, 2),
    (b"order-26", 1648610920, 5, 4),
    (b"order-27", 179368650, 6, 6),
    (b"order-28", 1472387843, 3, 11),
    (b"order-29", 1549549897, 0, 1),
    (b"order-30", 810093557, 0, 5),
    (b"order-31", 2092328176, 1, 4),
    (b"order-32", 201578479, 4, 7),
    (b"order-33", 111540661, 1, 1),
    (b"order-34", 657862783, 4, 7),
    (b"order-35", 876832304, 5, 8),
    (b"order-36", 1224771238, 5, 10),
    (b"order-37", 1487326363, 5, 7),
    (b"order-38", 1562560501, 5, 1),
    (b"order-39", 1509985119, 6, 3),
    (b"", 275646681, 2, 9),
    (b"a", 584102524, 5, 4),
    (b"\xff\x00\x10", 611467512, 5, 0),
    (
        b"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87-\xe2\x82\xac",
        1229281790,
        2,
        2,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_aiokafka_for_every_key() {
        for &(key, hash, in_7, in_12) in AIOKAFKA_MURMUR2 {
            assert_eq!(murmur2(key) & 0x7fff_ffff, hash, "{key:?}");
            assert_eq!(key_partition(key, 7), in_7, "{key:?}");
            assert_eq!(key_partition(key, 12), in_12, "{key:?}");
        }
    }
}
