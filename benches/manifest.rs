//! Loading manifests of 100 / 10 000 / 100 000 entries, generated and signed (fixed seed key)
//! by the benchmark itself:
//! - `load/{yaml,json}`: `engine::load` end to end — read the file, parse, validate, verify the
//!   ed25519 signature, register and build the ranked snapshot (settings from an empty dir);
//! - the stages on their own: `parse_yaml`, `parse_json`, `canonical` (signing bytes),
//!   `verify` (canonical + ed25519), `build_snapshot` (register + rank).
//!
//! `cargo bench --bench manifest`; `ONEIRIC_BENCH_SMOKE=1 cargo test --benches` runs each once.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use oneiric::config::Env;
use oneiric::config::stack::StackOrder;
use oneiric::engine::SettingsSource;
use oneiric::engine::{self, Dirs, LoadRequest, ManifestSource, Overrides};
use oneiric::manifest::{self, canonical, signature};
use oneiric::resolver::Registry;

struct Input {
    n: usize,
    yaml: String,
    json: String,
}

fn inputs() -> Vec<Input> {
    common::sizes()
        .into_iter()
        .map(|n| Input {
            n,
            yaml: common::yaml(n),
            json: common::json_text(n),
        })
        .collect()
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    // The 100 000-entry cases take a good fraction of a second each.
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g
}

fn request(dir: &std::path::Path, manifest: &std::path::Path) -> LoadRequest {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir");
    let key = signature::public_key_base64(&common::signing_key().verifying_key());
    let env = Env::from_pairs([
        ("ONEIRIC_TRUSTED_PUBLIC_KEYS", key.as_str()),
        ("ONEIRIC_REMOTE__SIGNATURE_REQUIRED", "true"),
    ]);
    LoadRequest {
        config: SettingsSource {
            path: etc,
            explicit: true,
        },
        manifests: vec![ManifestSource::Path(manifest.to_path_buf())],
        dirs: Dirs::resolve(
            Some(&dir.join("state")),
            Some(&dir.join("cache")),
            Some(&dir.join("run")),
            None,
            &env,
        ),
        env,
        overrides: Overrides::default(),
    }
}

fn load(c: &mut Criterion) {
    let inputs = inputs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let pins = common::Pins::new();

    for (format, ext) in [("yaml", "yaml"), ("json", "json")] {
        let mut g = group(c, &format!("load/{format}"));
        for i in &inputs {
            let path = tmp.path().join(format!("m{}.{ext}", i.n));
            let text = if format == "yaml" { &i.yaml } else { &i.json };
            std::fs::write(&path, text).expect("write");
            let req = request(tmp.path(), &path);
            let w = engine::load(&req, &pins, engine::TextDigest::Compute).expect("load");
            assert_eq!(w.snapshot.candidate_count(), i.n);
            assert!(w.manifests[0].signature.accepted());
            assert!(
                matches!(w.manifests[0].signature, signature::Verdict::Valid { .. }),
                "{:?}",
                w.manifests[0].signature
            );
            g.throughput(Throughput::Elements(i.n as u64));
            g.bench_function(BenchmarkId::from_parameter(i.n), |b| {
                b.iter(|| engine::load(&req, &pins, engine::TextDigest::Compute).expect("load"))
            });
        }
        g.finish();
    }

    for (name, json) in [("parse_yaml", false), ("parse_json", true)] {
        let mut g = group(c, name);
        for i in &inputs {
            g.throughput(Throughput::Elements(i.n as u64));
            let text = if json { &i.json } else { &i.yaml };
            g.bench_with_input(BenchmarkId::from_parameter(i.n), text, |b, t| {
                b.iter(|| manifest::parse(black_box(t), "bench").expect("parse"))
            });
        }
        g.finish();
    }

    let docs: Vec<(usize, manifest::Node)> = inputs
        .iter()
        .map(|i| (i.n, manifest::parse_tree(&i.json, "bench").expect("parse")))
        .collect();

    let mut g = group(c, "canonical");
    for (n, doc) in &docs {
        g.throughput(Throughput::Elements(*n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), doc, |b, d| {
            b.iter(|| canonical::signing_bytes(black_box(d)))
        });
    }
    g.finish();

    let policy = common::policy();
    let mut g = group(c, "verify");
    for (n, doc) in &docs {
        assert!(matches!(
            signature::verify(doc, &policy),
            signature::Verdict::Valid { .. }
        ));
        g.throughput(Throughput::Elements(*n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), doc, |b, d| {
            b.iter(|| signature::verify(black_box(d), &policy))
        });
    }
    g.finish();

    let mut g = group(c, "build_snapshot");
    for i in &inputs {
        let m = manifest::parse(&i.json, "bench").expect("parse");
        g.throughput(Throughput::Elements(i.n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.n), &m, |b, m| {
            // The manifest is moved into the registry, as a load does; its copy is not timed.
            b.iter_batched(
                || m.clone(),
                |m| {
                    let mut r = Registry::new();
                    r.register_manifest(m, &StackOrder::default());
                    r.build(&HashMap::new())
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
