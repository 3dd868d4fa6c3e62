//! Building the safety-service snapshot from the reflector stores of a large cluster (5,000
//! nodes, 150,000 pods): `cargo bench -p controller --bench snapshot`. Target: at most 500 ms.
//!
//! Each iteration builds one snapshot; it is dropped outside the measurement, before the next
//! one, as in the loop (one snapshot alive at a time).

use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

mod support;

fn snapshot_from_stores(c: &mut Criterion) {
    let cache = support::large_cache();
    let (nodes, pods, _, _) = cache.counts();
    assert_eq!((nodes, pods), (5_000, 150_000));
    let mut group = c.benchmark_group("snapshot");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("large_5000_nodes_150000_pods", |b| {
        b.iter_batched(|| (), |()| cache.snapshot(), BatchSize::PerIteration)
    });
    group.finish();
}

criterion_group!(benches, snapshot_from_stores);
criterion_main!(benches);
