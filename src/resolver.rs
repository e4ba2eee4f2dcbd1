//! The resolution core: candidates, ranking and explanations, built into an immutable
//! [`Snapshot`]. Pure data: no I/O, no async.
//!
//! Ranking for one `(domain, key)`, highest first, compared as a tuple (the reference rule):
//! `(matches explicit selection, required capabilities matched, priority, stack_level,
//! registration order)`. A full tie goes to the later registration.

use std::cmp::Ordering;
use std::collections::hash_map;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{Settings, StackOrder};
use crate::domain::Domain;
use crate::manifest::{Entry, HealthCheck, Manifest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Declared in the local settings (`candidates:` of a domain section).
    LocalPkg,
    /// From a manifest, local file or remote.
    RemoteManifest,
}

/// Where an effective priority came from, so `explain` can say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", content = "layer", rename_all = "snake_case")]
pub enum PriorityOrigin {
    Explicit,
    StackOrder(String),
    Default,
}

/// Selection overrides (settings selections, operator pins): `(domain, key)` → (provider, origin).
pub type Pins = HashMap<(Domain, String), (String, SelectionOrigin)>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub domain: Domain,
    pub key: String,
    pub provider: String,
    pub factory: Option<String>,
    pub priority: i64,
    pub priority_origin: PriorityOrigin,
    pub stack_level: Option<i64>,
    pub capabilities: Vec<String>,
    pub source: Source,
    /// File path or URL the candidate came from.
    pub origin: String,
    /// Named layer used for `ONEIRIC_STACK_ORDER`.
    pub layer: String,
    /// Registration order: later registrations win full ties.
    pub seq: u64,
    pub health: Option<HealthCheck>,
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// Why an explicit selection applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionOrigin {
    Settings,
    /// Pinned by an operator `swap`.
    Swap,
}

/// What a caller asks of the winner.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    pub capabilities: Vec<String>,
    /// `false` ranks partial matches instead of filtering them out.
    pub require_all: bool,
}

impl Requirements {
    pub fn none() -> Self {
        Self {
            capabilities: Vec::new(),
            require_all: true,
        }
    }
}

/// Builds the candidate list in registration order; the same candidate registered twice
/// (same domain, key, provider and origin) replaces the first instead of duplicating.
#[derive(Debug, Default)]
pub struct Registry {
    candidates: Vec<Candidate>,
    /// Hash of a candidate's identity (domain, key, provider, origin) → its index; the identity
    /// itself is compared on a hit, so no strings are copied into the index. A different
    /// identity with the same hash (rare) is listed in `collided` instead.
    index: HashMap<u64, usize, RandomState>,
    collided: Vec<usize>,
    hasher: RandomState,
    next_seq: u64,
    pub duplicates: Vec<String>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, mut c: Candidate) {
        c.seq = self.next_seq;
        self.next_seq += 1;
        let hash = self.hasher.hash_one((
            c.domain,
            c.key.as_str(),
            c.provider.as_str(),
            c.origin.as_str(),
        ));
        let same = |o: &Candidate| {
            o.domain == c.domain
                && o.key == c.key
                && o.provider == c.provider
                && o.origin == c.origin
        };
        let existing = match self.index.get(&hash) {
            Some(&i) if same(&self.candidates[i]) => Some(i),
            Some(_) => self
                .collided
                .iter()
                .copied()
                .find(|&i| same(&self.candidates[i])),
            None => None,
        };
        if let Some(i) = existing {
            self.duplicates.push(format!(
                "{}: {}/{} provider {} registered twice; the later one is kept",
                c.origin, c.domain, c.key, c.provider
            ));
            self.candidates[i] = c;
        } else {
            let i = self.candidates.len();
            match self.index.entry(hash) {
                hash_map::Entry::Vacant(slot) => {
                    slot.insert(i);
                }
                hash_map::Entry::Occupied(_) => self.collided.push(i),
            }
            self.candidates.push(c);
        }
    }

    /// Local candidates from settings, each domain in turn.
    pub fn register_settings(&mut self, settings: &Settings, stack: &StackOrder, origin: &str) {
        for domain in Domain::ALL {
            for lc in &settings.domain(domain).candidates {
                let layer = lc.layer.clone().unwrap_or_else(|| "local".into());
                let (priority, priority_origin) = effective_priority(lc.priority, &layer, stack);
                self.register(Candidate {
                    domain,
                    key: lc.key.clone(),
                    provider: lc.provider.clone(),
                    factory: lc.factory.clone(),
                    priority,
                    priority_origin,
                    stack_level: lc.stack_level,
                    capabilities: lc
                        .capabilities
                        .iter()
                        .map(|c| c.name().to_string())
                        .collect(),
                    source: Source::LocalPkg,
                    origin: origin.to_string(),
                    layer,
                    seq: 0,
                    health: lc.health.clone(),
                    version: None,
                    metadata: lc.metadata.clone(),
                });
            }
        }
    }

    /// The manifest's entries become candidates, their strings moved rather than copied.
    pub fn register_manifest(&mut self, m: Manifest, stack: &StackOrder) {
        self.candidates.reserve(m.entries.len());
        for e in m.entries {
            self.register(candidate_from_entry(
                e,
                &m.origin,
                m.source.as_deref(),
                stack,
            ));
        }
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Freezes the registry into a snapshot, ranking each key once so that resolving without
    /// requirements is a single lookup.
    pub fn build(
        self,
        selections: &HashMap<(Domain, String), (String, SelectionOrigin)>,
    ) -> Snapshot {
        Snapshot::from_registered(self.candidates, selections)
    }
}

impl Snapshot {
    /// A snapshot of candidates that already carry their registration order (`seq`): what
    /// [`Registry::build`] freezes, and what a persisted snapshot is rebuilt from.
    pub fn from_registered(
        candidates: Vec<Candidate>,
        selections: &HashMap<(Domain, String), (String, SelectionOrigin)>,
    ) -> Snapshot {
        let mut keys: [KeyMap; 6] = Default::default();
        let total = candidates.len();
        for c in candidates {
            let slot = &mut keys[c.domain as usize];
            // The key is copied once per key, not once per candidate.
            match slot.get_mut(c.key.as_str()) {
                Some(entry) => entry.ranked.push(Arc::new(c)),
                None => {
                    let key = c.key.clone();
                    slot.insert(
                        key,
                        KeyEntry {
                            ranked: vec![Arc::new(c)],
                            selection: None,
                        },
                    );
                }
            }
        }
        for domain in Domain::ALL {
            for (key, entry) in keys[domain as usize].iter_mut() {
                if !selections.is_empty() {
                    entry.selection = selections.get(&(domain, key.clone())).cloned();
                }
                entry.rank();
            }
        }
        Snapshot {
            keys,
            candidates: total,
        }
    }
}

fn effective_priority(
    explicit: Option<i64>,
    layer: &str,
    stack: &StackOrder,
) -> (i64, PriorityOrigin) {
    match explicit {
        Some(p) => (p, PriorityOrigin::Explicit),
        None => match stack.priority_of(layer) {
            Some((p, name)) => (p, PriorityOrigin::StackOrder(name.to_string())),
            None => (0, PriorityOrigin::Default),
        },
    }
}

fn candidate_from_entry(
    e: Entry,
    origin: &str,
    source: Option<&str>,
    stack: &StackOrder,
) -> Candidate {
    let capabilities = e.capability_names();
    let layer = e
        .layer
        .or_else(|| source.map(str::to_string))
        .unwrap_or_else(|| "default".into());
    let (priority, priority_origin) = effective_priority(e.priority, &layer, stack);
    Candidate {
        domain: e.domain,
        key: e.key,
        provider: e.provider,
        factory: Some(e.factory),
        priority,
        priority_origin,
        stack_level: e.stack_level,
        capabilities,
        source: Source::RemoteManifest,
        origin: origin.to_string(),
        layer,
        seq: 0,
        health: e.health,
        version: e.version,
        metadata: e.metadata,
    }
}

type Score = (bool, usize, i64, i64, u64);

fn score(c: &Candidate, selection: Option<&str>, required: &[String]) -> Score {
    let matched = required
        .iter()
        .filter(|r| c.capabilities.iter().any(|have| have == *r))
        .count();
    (
        selection == Some(c.provider.as_str()),
        matched,
        c.priority,
        c.stack_level.unwrap_or(0),
        c.seq,
    )
}

/// A domain's keys. Keys come from settings and manifests the host trusts, so a seeded fast
/// hash is enough against collisions.
type KeyMap = HashMap<String, KeyEntry, RandomState>;

#[derive(Debug)]
struct KeyEntry {
    /// Best first, for empty requirements.
    ranked: Vec<Arc<Candidate>>,
    selection: Option<(String, SelectionOrigin)>,
}

impl KeyEntry {
    /// Orders `ranked` best first under the entry's selection (no capability requirements).
    fn rank(&mut self) {
        let sel = self.selection.as_ref().map(|(p, _)| p.as_str());
        self.ranked
            .sort_by_key(|c| std::cmp::Reverse(score(c, sel, &[])));
    }
}

/// An immutable, fully ranked view of every candidate. Readers share it through an `Arc`; a
/// reload builds a new one off to the side and swaps it in.
#[derive(Debug, Default)]
pub struct Snapshot {
    keys: [KeyMap; 6],
    candidates: usize,
}

/// One line of an explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    pub rank: usize,
    pub selected: bool,
    /// False for candidates filtered out by required capabilities.
    pub eligible: bool,
    pub reasons: Vec<String>,
    pub candidate: Arc<Candidate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub domain: Domain,
    pub key: String,
    pub selected: Option<String>,
    pub selection_override: Option<String>,
    pub selection_origin: Option<SelectionOrigin>,
    pub candidates: Vec<Ranked>,
    pub notes: Vec<String>,
}

impl Snapshot {
    /// The same candidates ranked under other selections (after an operator swap or unpin):
    /// no re-parsing, and the candidates themselves are shared with `self`.
    pub fn reselect(
        &self,
        selections: &HashMap<(Domain, String), (String, SelectionOrigin)>,
    ) -> Snapshot {
        let mut keys: [KeyMap; 6] = Default::default();
        for domain in Domain::ALL {
            for (key, entry) in &self.keys[domain as usize] {
                // Registration order is the `seq` each candidate carries, so ranking from a
                // ranked list gives the same result as ranking from the registry.
                let mut entry = KeyEntry {
                    ranked: entry.ranked.clone(),
                    selection: selections.get(&(domain, key.clone())).cloned(),
                };
                entry.rank();
                keys[domain as usize].insert(key.clone(), entry);
            }
        }
        Snapshot {
            keys,
            candidates: self.candidates,
        }
    }

    pub fn candidate_count(&self) -> usize {
        self.candidates
    }

    /// Every candidate in registration order: what [`Snapshot::from_registered`] takes back.
    pub fn candidates_in_order(&self) -> Vec<&Candidate> {
        let mut all: Vec<&Candidate> = self
            .keys
            .iter()
            .flat_map(|m| m.values())
            .flat_map(|e| e.ranked.iter().map(|c| c.as_ref()))
            .collect();
        all.sort_unstable_by_key(|c| c.seq);
        all
    }

    pub fn key_count(&self) -> usize {
        self.keys.iter().map(HashMap::len).sum()
    }

    pub fn domain_counts(&self) -> BTreeMap<Domain, (usize, usize)> {
        Domain::ALL
            .into_iter()
            .map(|d| {
                let m = &self.keys[d as usize];
                (d, (m.values().map(|e| e.ranked.len()).sum(), m.len()))
            })
            .collect()
    }

    /// The winner for `(domain, key)` with no capability requirements: one hash lookup.
    pub fn resolve(&self, domain: Domain, key: &str) -> Option<&Arc<Candidate>> {
        self.keys[domain as usize].get(key)?.ranked.first()
    }

    /// The winner under requirements (capability filtering re-ranks the key's candidates).
    pub fn resolve_with(
        &self,
        domain: Domain,
        key: &str,
        req: &Requirements,
    ) -> Option<Arc<Candidate>> {
        if req.capabilities.is_empty() {
            return self.resolve(domain, key).cloned();
        }
        self.explain(domain, key, req)?
            .candidates
            .into_iter()
            .find(|r| r.selected)
            .map(|r| r.candidate)
    }

    pub fn candidates(&self, domain: Domain, key: &str) -> &[Arc<Candidate>] {
        self.keys[domain as usize]
            .get(key)
            .map(|e| e.ranked.as_slice())
            .unwrap_or(&[])
    }

    /// Keys of one domain, sorted.
    pub fn keys(&self, domain: Domain) -> Vec<&str> {
        let mut k: Vec<&str> = self.keys[domain as usize]
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    }

    pub fn explain(&self, domain: Domain, key: &str, req: &Requirements) -> Option<Explanation> {
        let entry = self.keys[domain as usize].get(key)?;
        let sel = entry.selection.as_ref().map(|(p, _)| p.as_str());
        let eligible = |c: &Candidate| {
            !req.require_all
                || req
                    .capabilities
                    .iter()
                    .all(|r| c.capabilities.iter().any(|h| h == r))
        };
        let mut order: Vec<&Arc<Candidate>> = entry.ranked.iter().collect();
        if !req.capabilities.is_empty() {
            order.sort_by(|a, b| {
                // Eligible candidates first, then by score.
                match (eligible(a), eligible(b)) {
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    _ => score(b, sel, &req.capabilities).cmp(&score(a, sel, &req.capabilities)),
                }
            });
        }
        let mut notes = Vec::new();
        if let Some(p) = sel {
            if !entry.ranked.iter().any(|c| c.provider == p) {
                notes.push(format!(
                    "selection override `{p}` matches no candidate; ranking applies"
                ));
            }
        }
        let mut selected = None;
        let candidates = order
            .into_iter()
            .enumerate()
            .map(|(rank, c)| {
                let ok = eligible(c);
                let is_winner = ok && selected.is_none();
                if is_winner {
                    selected = Some(c.provider.clone());
                }
                Ranked {
                    rank: rank + 1,
                    selected: is_winner,
                    eligible: ok,
                    reasons: reasons(
                        c,
                        sel,
                        entry.selection.as_ref().map(|s| s.1),
                        req,
                        ok,
                        is_winner,
                    ),
                    candidate: Arc::clone(c),
                }
            })
            .collect();
        if selected.is_none() {
            notes.push("no candidate has every required capability".into());
        }
        Some(Explanation {
            domain,
            key: key.to_string(),
            selected,
            selection_override: sel.map(str::to_string),
            selection_origin: entry.selection.as_ref().map(|s| s.1),
            candidates,
            notes,
        })
    }
}

fn reasons(
    c: &Candidate,
    sel: Option<&str>,
    sel_origin: Option<SelectionOrigin>,
    req: &Requirements,
    eligible: bool,
    winner: bool,
) -> Vec<String> {
    let mut r = Vec::new();
    if !eligible {
        let missing: Vec<&str> = req
            .capabilities
            .iter()
            .filter(|x| !c.capabilities.iter().any(|h| h == *x))
            .map(String::as_str)
            .collect();
        r.push(format!(
            "filtered: missing capability {}",
            missing.join(", ")
        ));
    }
    if sel == Some(c.provider.as_str()) {
        let from = match sel_origin {
            Some(SelectionOrigin::Swap) => "swap",
            _ => "settings",
        };
        r.push(format!(
            "matched selection override {} ({from})",
            c.provider
        ));
    }
    if !req.capabilities.is_empty() {
        let matched = req
            .capabilities
            .iter()
            .filter(|x| c.capabilities.iter().any(|h| h == *x))
            .count();
        r.push(format!(
            "capability_match={matched}/{}",
            req.capabilities.len()
        ));
    }
    r.push(match &c.priority_origin {
        PriorityOrigin::Explicit => format!("priority={}", c.priority),
        PriorityOrigin::StackOrder(layer) => {
            format!(
                "priority={} (inferred from stack layer {layer})",
                c.priority
            )
        }
        PriorityOrigin::Default => format!("priority={} (default)", c.priority),
    });
    r.push(format!("stack_level={}", c.stack_level.unwrap_or(0)));
    r.push(format!("registration_order={}", c.seq));
    if eligible && !winner {
        r.push("shadowed".into());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(key: &str, provider: &str, prio: Option<i64>, stack: Option<i64>) -> Candidate {
        Candidate {
            domain: Domain::Adapter,
            key: key.into(),
            provider: provider.into(),
            factory: None,
            priority: prio.unwrap_or(0),
            priority_origin: if prio.is_some() {
                PriorityOrigin::Explicit
            } else {
                PriorityOrigin::Default
            },
            stack_level: stack,
            capabilities: Vec::new(),
            source: Source::RemoteManifest,
            origin: format!("test-{provider}"),
            layer: "default".into(),
            seq: 0,
            health: None,
            version: None,
            metadata: Map::new(),
        }
    }

    #[test]
    fn priority_beats_stack_level_and_ties_go_to_later() {
        let mut r = Registry::new();
        r.register(cand("cache", "a", Some(5), Some(100)));
        r.register(cand("cache", "b", Some(6), Some(0)));
        r.register(cand("cache", "c", Some(6), Some(0)));
        let s = r.build(&HashMap::new());
        assert_eq!(s.resolve(Domain::Adapter, "cache").unwrap().provider, "c");
        let e = s
            .explain(Domain::Adapter, "cache", &Requirements::none())
            .unwrap();
        let order: Vec<&str> = e
            .candidates
            .iter()
            .map(|r| r.candidate.provider.as_str())
            .collect();
        assert_eq!(order, ["c", "b", "a"]);
        assert!(e.candidates[1].reasons.contains(&"shadowed".to_string()));
    }

    #[test]
    fn selection_and_capabilities() {
        let mut r = Registry::new();
        let mut a = cand("cache", "a", Some(1), None);
        a.capabilities = vec!["kv".into()];
        let mut b = cand("cache", "b", Some(9), None);
        b.capabilities = vec!["ttl".into()];
        r.register(a);
        r.register(b);
        let mut sel = HashMap::new();
        sel.insert(
            (Domain::Adapter, "cache".to_string()),
            ("a".to_string(), SelectionOrigin::Settings),
        );
        let s = r.build(&sel);
        assert_eq!(s.resolve(Domain::Adapter, "cache").unwrap().provider, "a");
        let req = Requirements {
            capabilities: vec!["ttl".into()],
            require_all: true,
        };
        assert_eq!(
            s.resolve_with(Domain::Adapter, "cache", &req)
                .unwrap()
                .provider,
            "b"
        );
        let e = s.explain(Domain::Adapter, "cache", &req).unwrap();
        assert!(e.candidates[1].reasons[0].starts_with("filtered"));
    }

    #[test]
    fn stack_order_infers_priority() {
        let stack = StackOrder::parse("production:100,staging:50,default:0").unwrap();
        assert_eq!(
            effective_priority(None, "production", &stack),
            (100, PriorityOrigin::StackOrder("production".into()))
        );
        assert_eq!(effective_priority(Some(3), "production", &stack).0, 3);
    }

    #[test]
    fn reselect_ranks_like_a_fresh_build() {
        let make = || {
            let mut r = Registry::new();
            r.register(cand("cache", "a", Some(1), None));
            r.register(cand("cache", "b", Some(9), None));
            r.register(cand("cache", "c", Some(5), Some(2)));
            r
        };
        let mut sel = HashMap::new();
        sel.insert(
            (Domain::Adapter, "cache".to_string()),
            ("a".to_string(), SelectionOrigin::Swap),
        );
        let fresh = make().build(&sel);
        let re = make().build(&HashMap::new()).reselect(&sel);
        let order = |s: &Snapshot| -> Vec<String> {
            s.candidates(Domain::Adapter, "cache")
                .iter()
                .map(|c| c.provider.clone())
                .collect()
        };
        assert_eq!(order(&fresh), ["a", "b", "c"]);
        assert_eq!(order(&fresh), order(&re));
        let back = re.reselect(&HashMap::new());
        assert_eq!(order(&back), ["b", "c", "a"]);
    }

    #[test]
    fn re_registration_does_not_duplicate() {
        let mut r = Registry::new();
        r.register(cand("k", "p", None, None));
        r.register(cand("k", "p", None, None));
        assert_eq!(r.len(), 1);
        assert_eq!(r.duplicates.len(), 1);
    }
}
