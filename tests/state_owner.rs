//! The served state has one owner: swaps, unpins and reloads racing each other never lose an
//! update, and every published state has a generation of its own, strictly increasing.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use common::*;

/// A manifest big enough that a reload takes a while, so that swaps land in the middle of it,
/// plus the key `race` where ranking prefers `a` and an operator pin may choose `b`.
fn big_manifest(sb: &Sandbox, entries: usize) {
    let mut m = String::from("source: t\nentries:\n");
    m.push_str("  - {domain: adapter, key: race, provider: a, factory: f, priority: 10}\n");
    m.push_str("  - {domain: adapter, key: race, provider: b, factory: f, priority: 1}\n");
    for i in 0..entries {
        let _ = writeln!(
            m,
            "  - {{domain: service, key: k{i}, provider: p{}, factory: f, priority: {}}}",
            i % 7,
            i % 13
        );
    }
    sb.write("etc/manifest.yaml", &m);
}

fn served(svc: &Service) -> (u64, String) {
    let (status, body) = http(svc.port, "GET", "/v1/resolve/adapter/race");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    (
        v["generation"].as_u64().expect("generation"),
        v["provider"].as_str().expect("provider").to_string(),
    )
}

#[test]
fn swaps_racing_reloads_lose_no_update_and_generations_increase() {
    let sb = Sandbox::new();
    big_manifest(&sb, 4000);
    let notify = Notify::new(sb.dir.path());
    let svc = Service::start(&sb, Some(&notify), None, &[]);
    assert!(notify.wait_for("READY=1", 1, Duration::from_secs(20)));
    assert_eq!(served(&svc).1, "a");

    // Every (generation, provider) pair seen: one generation must never name two states.
    let mut seen: HashMap<u64, String> = HashMap::new();
    let mut last_gen = 0;
    let mut record = |svc: &Service| {
        let (g, p) = served(svc);
        if let Some(prev) = seen.insert(g, p.clone()) {
            assert_eq!(prev, p, "generation {g} served both {prev} and {p}");
        }
        assert!(g >= last_gen, "generation went back from {last_gen} to {g}");
        last_gen = g;
        p
    };
    for round in 0..25 {
        let readies = notify.count("READY=1");
        // The reload starts first; the swap lands while it is loading.
        svc.signal("HUP");
        std::thread::sleep(Duration::from_millis((round % 5) * 3));
        let o = sb.run(&["swap", "adapter", "race", "b"]);
        assert_eq!(code(&o), 0, "round {round}: {} {}", stdout(&o), stderr(&o));
        record(&svc);
        assert!(
            notify.wait_for("READY=1", readies + 1, Duration::from_secs(30)),
            "round {round}: reload did not finish"
        );
        assert_eq!(
            record(&svc),
            "b",
            "round {round}: the operator's pin was overwritten by a reload that started before it"
        );

        let readies = notify.count("READY=1");
        svc.signal("HUP");
        std::thread::sleep(Duration::from_millis((round % 5) * 3));
        let o = sb.run(&["swap", "adapter", "race", "--unpin"]);
        assert_eq!(code(&o), 0, "round {round}: {}", stderr(&o));
        assert!(notify.wait_for("READY=1", readies + 1, Duration::from_secs(30)));
        assert_eq!(
            record(&svc),
            "a",
            "round {round}: the unpin was overwritten by a reload that started before it"
        );
    }
    // Two reloads and two operator changes per round, each a state of its own.
    assert!(last_gen > 25 * 4, "generation {last_gen} after 100 changes");
}
