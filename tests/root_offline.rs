//! Root's offline CLI against state and cache directories owned by another user, who has
//! planted links and FIFOs there (what a compromised service can do to its own directories).
//! Every offline command that reads or writes there is run as root: nothing outside those
//! directories may change, nothing may hang, and each command either does its job as the
//! directories' owner or refuses with a message.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::httpd::Server;
use common::*;

/// A uid and gid no user database names: a throwaway owner.
const OWNER: u32 = 61_234;

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Path → (content or link target, mode, uid, mtime) of everything under `dir`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, u32, i64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let body = if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                if m.is_dir() {
                    todo.push(p.clone());
                }
                Vec::new()
            };
            out.insert(p, (body, m.mode(), m.uid(), m.mtime()));
        }
    }
    out
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o666) },
        0,
        "{}",
        p.display()
    );
}

/// Files under `dir` that are not the owner's (what root would leave behind as root).
fn not_owned(dir: &Path) -> Vec<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|(_, (_, _, uid, _))| *uid != OWNER)
        .map(|(p, _)| p)
        .collect()
}

fn lchown(p: &Path) {
    std::os::unix::fs::lchown(p, Some(OWNER), Some(OWNER)).unwrap();
}

#[test]
fn root_offline_commands_act_as_the_directories_owner_and_planted_links_reach_nothing() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to own files as another user (CI runs as root)");
        return;
    }
    let sb = Sandbox::new();
    // The owner must be able to reach its directories and read the settings, as the service
    // user reads /etc/oneiric through its group.
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["state", "cache", "run"] {
        let p = sb.path(d);
        std::os::unix::fs::chown(&p, Some(OWNER), Some(OWNER)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o750)).unwrap();
    }
    sb.write(
        "etc/adapters.yml",
        "selections: {}\ncandidates:\n  - {key: cache, provider: memory, factory: 'builtin:memory', priority: 1}\n  - {key: cache, provider: redis, factory: 'builtin:redis', priority: 5}\n",
    );
    let server = Server::serving(signed_fleet_manifest(&sb));
    let url = format!("http://127.0.0.1:{}/fleet.json", server.port);
    sb.write(
        "etc/remote.yml",
        &format!(
            "enabled: true\nmanifest_url: {url}\nallow_http: true\nmax_retries: 0\ntimeout_seconds: 2\nsignature_required: true\ntrusted_public_keys: [\"{TEST_KEY}\"]\n"
        ),
    );
    let run = |args: &[&str]| run_with_timeout(sb.cmd(args), Duration::from_secs(30));

    // 1. Clean directories: root's offline commands do their job, and what they create
    // belongs to the owner, as if the owner had run them.
    for args in [
        &["remote-sync"][..],
        &["swap", "adapter", "cache", "memory"],
        &["pause", "adapter", "cache", "--note", "maintenance"],
        &["pause", "adapter", "cache", "--resume"],
    ] {
        let o = run(args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    assert_eq!(
        stdout(&run(&["resolve", "adapter", "cache"])).trim(),
        "memory"
    );
    assert_eq!(stdout(&run(&["resolve", "service", "api"])).trim(), "v1");
    for d in ["state", "cache"] {
        assert_eq!(not_owned(&sb.path(d)), Vec::<PathBuf>::new(), "in {d}");
    }

    // 2. The owner plants traps, in two rounds. First every file root's commands open is a
    // link out or a FIFO; then the cache's `remote` directory is a link to a directory of
    // root's, so that a file created "in the cache" would be created there.
    let outside = sb.path("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"keep").unwrap();
    std::fs::write(outside.join("root.db"), b"keep").unwrap();
    std::fs::set_permissions(
        outside.join("root.db"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let state = sb.path("state");
    let cache = sb.path("cache");
    let plant_link = |at: PathBuf, to: &Path| {
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(to, &at).unwrap();
        lchown(&at);
    };
    let plant_fifo = |at: PathBuf| {
        let _ = std::fs::remove_file(&at);
        mkfifo(&at);
        lchown(&at);
    };
    plant_link(state.join("lifecycle_status.json"), &outside.join("victim"));
    for suffix in ["", "-wal", "-shm", "-journal"] {
        plant_link(
            state.join(format!("domain_activity.sqlite{suffix}")),
            &outside.join("root.db"),
        );
    }
    plant_fifo(state.join("remote-highwater.json"));
    plant_link(state.join("served_snapshot.json"), &outside.join("victim"));
    let entry = std::fs::read_dir(cache.join("remote"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    plant_fifo(entry.join("manifest"));
    plant_link(entry.join("meta.json"), &outside.join("victim"));
    let first = run_all(&sb, &outside);
    assert!(first.contains("a FIFO, not a regular file"), "{first}");
    assert!(first.contains("symbolic link"), "{first}");

    std::fs::rename(cache.join("remote"), sb.path("old-remote")).unwrap();
    plant_link(cache.join("remote"), &outside);
    std::fs::remove_file(state.join("remote-highwater.json")).unwrap();
    let second = run_all(&sb, &outside);
    assert!(second.contains("Permission denied"), "{second}");
}

/// Runs every offline command that reads or writes the service's directories and checks what
/// the round must show; returns what the commands said.
fn run_all(sb: &Sandbox, outside: &Path) -> String {
    let before = tree(outside);
    let settings_before = tree(&sb.path("etc"));
    let commands: &[&[&str]] = &[
        &["list"],
        &["resolve", "adapter", "cache"],
        &["explain", "adapter", "cache"],
        &["status"],
        &["check"],
        &["health"],
        &["health", "--pre-start"],
        &["health", "--probe"],
        &["swap", "adapter", "cache", "redis"],
        &["swap", "adapter", "cache", "--unpin"],
        &["pause", "adapter", "cache"],
        &["drain", "adapter", "cache", "--clear"],
        &["activity"],
        &["activity", "--changes"],
        &["remote-sync"],
        &["remote-status"],
        &["remote-reset-rollback", "--all"],
    ];
    let mut report = String::new();
    for args in commands {
        // run_with_timeout fails the test on a hang (a FIFO read would block forever).
        let o = run_with_timeout(sb.cmd(args), Duration::from_secs(30));
        let err = stderr(&o);
        report.push_str(&format!(
            "{args:?} -> {}: {} {}\n",
            code(&o),
            stdout(&o).trim(),
            err.trim()
        ));
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if code(&o) != 0 {
            assert!(
                err.starts_with("oneiric: "),
                "{args:?} refused without a message: {err}"
            );
        }
    }
    eprintln!("{report}");
    assert_eq!(
        tree(outside),
        before,
        "a file outside the directories changed:\n{report}"
    );
    assert_eq!(
        tree(&sb.path("etc")),
        settings_before,
        "the settings changed"
    );
    for d in ["state", "cache"] {
        assert_eq!(
            not_owned(&sb.path(d)),
            Vec::<PathBuf>::new(),
            "in {d}:\n{report}"
        );
    }
    report
}
