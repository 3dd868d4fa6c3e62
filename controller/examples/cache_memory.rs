//! The resident memory of the watched cache holding a large cluster (5,000 nodes, 150,000 pods,
//! stored as the reflectors store them: compact encoded entries): `cargo run --release -p
//! controller --example cache_memory`. Target: at most 1 GiB. Prints VmRSS after filling the
//! stores, while one snapshot built from them is alive (as during a scan), and after dropping
//! it; then the peak, VmHWM, which includes generating the synthetic cluster.

use std::time::Instant;

#[path = "../benches/support/mod.rs"]
mod support;

fn status(field: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|line| line.starts_with(field))
        .map(|line| line[field.len()..].trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    println!("start: VmRSS {}", status("VmRSS:"));
    let started = Instant::now();
    let cache = support::large_cache();
    support::trim();
    let (nodes, pods, pdbs, namespaces) = cache.counts();
    println!(
        "cache of {nodes} nodes, {pods} pods, {pdbs} PodDisruptionBudgets, {namespaces} namespaces filled in {:.1?}",
        started.elapsed()
    );
    println!(
        "cache only: VmRSS {} ({} MB of encoded messages)",
        status("VmRSS:"),
        cache.encoded_bytes() / 1_000_000
    );

    let started = Instant::now();
    let snapshot = cache.snapshot();
    let elapsed = started.elapsed();
    println!(
        "snapshot of {} pods ({} MB encoded) built in {elapsed:.1?}; cache + snapshot: VmRSS {}",
        snapshot.pod_count(),
        snapshot.encoded().len() / 1_000_000,
        status("VmRSS:")
    );
    drop(snapshot);
    support::trim();
    println!(
        "right after dropping the snapshot: VmRSS {}",
        status("VmRSS:")
    );
    // As between two scans: a moment passes, a few allocations are made and freed.
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(std::hint::black_box(vec![0u8; 4096]));
    }
    println!(
        "a second later: VmRSS {}; peak VmHWM {} (includes generating the cluster)",
        status("VmRSS:"),
        status("VmHWM:")
    );
}
