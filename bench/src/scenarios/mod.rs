//! The broker scenarios of the benchmark; scenario 3 (no broker) is in
//! `kafkaesk_bench::micro` and scenario 6 (Python) in `crate::python`.

pub mod consume;
pub mod latency;
pub mod memory;
pub mod publish;
