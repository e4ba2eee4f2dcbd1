//! The service run in-process: `daemon::serve` with listeners bound by the test on port 0 and
//! a shutdown signal the test owns, as the binary's `run` does with SIGTERM.

mod common;

use std::time::Duration;

use common::*;
use oneiric::config::Env;
use oneiric::daemon::{ServeOptions, bind_listeners, serve};
use oneiric::engine::{self, Dirs, LoadRequest, ManifestSource, Overrides, SettingsSource};

#[test]
fn serve_in_process_on_port_zero_then_stop() {
    let sb = Sandbox::new();
    let manifest = sb.write(
        "m.yaml",
        "entries:\n  - {domain: adapter, key: cache, provider: redis, factory: f}\n",
    );
    let req = LoadRequest {
        config: SettingsSource {
            path: sb.path("etc"),
            explicit: true,
        },
        manifests: vec![ManifestSource::Path(manifest)],
        env: Env::from_pairs(Vec::<(String, String)>::new()),
        overrides: Overrides {
            http_port: Some(0),
            ..Overrides::default()
        },
        dirs: Dirs {
            state: sb.path("state"),
            cache: sb.path("cache"),
            runtime: sb.path("run"),
        },
    };
    let settings = engine::settings(&req).expect("settings");
    let listeners = bind_listeners(&settings, &req.dirs, &req.env).expect("bind");
    let port = listeners
        .http
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .expect("http listener");
    let runtime = runtime();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        req,
        settings,
        metrics: oneiric::metrics::Metrics::new().expect("metrics"),
        banner: "in-process test".into(),
    };
    let server = runtime.spawn(serve(options, listeners, async {
        let _ = stopped.await;
    }));
    // The listener was bound before the first load: requests wait in the backlog, never refused.
    let (status, body) = http(port, "GET", "/v1/resolve/adapter/cache");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"provider\":\"redis\""), "{body}");
    assert_eq!(http(port, "GET", "/readyz").0, 200);
    let _ = stop.send(());
    let result = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), server).await })
        .expect("serve stopped in time")
        .expect("serve task");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        !sb.path("run/control.sock").exists(),
        "control socket left behind"
    );
}
