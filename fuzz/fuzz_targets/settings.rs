//! Settings parsing: the text of a single merged settings file (YAML, then JSON), read by
//! `engine::load_settings` from a temporary file (the loader reads paths; its text functions
//! are private). Property: settings that load, written back as JSON, load to the same settings.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oneiric::config::Env;
use oneiric::engine::{SettingsSource, load_settings};

static DIR: OnceLock<PathBuf> = OnceLock::new();

fn load(path: PathBuf) -> Result<oneiric::config::Settings, oneiric::config::ConfigError> {
    let source = SettingsSource {
        path,
        explicit: true,
    };
    load_settings(&source, &Env::default()).map(|l| l.settings)
}

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("oneiric-fuzz-settings-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a temporary directory");
        d
    });
    for name in ["settings.yaml", "settings.json"] {
        let path = dir.join(name);
        std::fs::write(&path, data).expect("write the input");
        let Ok(settings) = load(path) else {
            continue;
        };
        let back = dir.join("written-back.json");
        std::fs::write(
            &back,
            serde_json::to_vec(&settings).expect("settings are JSON"),
        )
        .expect("write the settings back");
        let again = load(back).expect("settings written back load");
        assert_eq!(again, settings);
    }
});
