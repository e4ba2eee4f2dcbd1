//! In-process resolution: `Snapshot::resolve` of one (domain, key), capability-filtered
//! resolution and `explain`, at 100 / 10 000 / 100 000 candidates.
//!
//! `cargo bench --bench resolver`; `ONEIRIC_BENCH_SMOKE=1 cargo test --benches` runs each once.

mod common;

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use oneiric::config::stack::StackOrder;
use oneiric::manifest;
use oneiric::resolver::{Registry, Requirements, Snapshot};

fn snapshot(n: usize) -> Snapshot {
    let m = manifest::from_document(&common::document(n), "bench").expect("manifest");
    assert_eq!(m.entries.len(), n);
    let mut r = Registry::new();
    r.register_manifest(m, &StackOrder::default());
    let s = r.build(&HashMap::new());
    assert_eq!(s.candidate_count(), n);
    s
}

fn resolve(c: &mut Criterion) {
    let snaps: Vec<(usize, Snapshot)> = common::sizes()
        .into_iter()
        .map(|n| (n, snapshot(n)))
        .collect();

    let mut g = c.benchmark_group("resolve");
    for (n, s) in &snaps {
        let (domain, key) = common::probe_key(*n);
        assert!(s.resolve(domain, &key).is_some());
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(n), s, |b, s| {
            b.iter(|| s.resolve(black_box(domain), black_box(key.as_str())))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("resolve_miss");
    for (n, s) in &snaps {
        let (domain, _) = common::probe_key(*n);
        g.bench_with_input(BenchmarkId::from_parameter(n), s, |b, s| {
            b.iter(|| s.resolve(black_box(domain), black_box("no-such-key")))
        });
    }
    g.finish();

    // `?capability=cap-2`: re-ranks the key's candidates under the requirement.
    let req = Requirements {
        capabilities: vec!["cap-2".into()],
        require_all: true,
    };
    let mut g = c.benchmark_group("resolve_with_capability");
    for (n, s) in &snaps {
        let (domain, key) = common::probe_key(*n);
        assert_eq!(
            s.resolve_with(domain, &key, &req).unwrap().provider,
            "provider-2"
        );
        g.bench_with_input(BenchmarkId::from_parameter(n), s, |b, s| {
            b.iter(|| s.resolve_with(black_box(domain), black_box(key.as_str()), &req))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("explain");
    for (n, s) in &snaps {
        let (domain, key) = common::probe_key(*n);
        g.bench_with_input(BenchmarkId::from_parameter(n), s, |b, s| {
            b.iter(|| {
                s.explain(
                    black_box(domain),
                    black_box(key.as_str()),
                    &Requirements::none(),
                )
            })
        });
    }
    g.finish();

    // `explain` as the HTTP API returns it: built and serialised to JSON.
    let mut g = c.benchmark_group("explain_json");
    for (n, s) in &snaps {
        let (domain, key) = common::probe_key(*n);
        g.bench_with_input(BenchmarkId::from_parameter(n), s, |b, s| {
            b.iter(|| {
                let e = s.explain(
                    black_box(domain),
                    black_box(key.as_str()),
                    &Requirements::none(),
                );
                serde_json::to_vec(&e).expect("json")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, resolve);
criterion_main!(benches);
