//! Every scenario shipped in `scenarios/` passes with its own seed.

use pilot_sim::scenario::{run, Scenario};
use std::path::Path;

#[test]
fn every_shipped_scenario_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    for file in files {
        let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = run(&scenario, None).unwrap();
        assert!(
            outcome.passed(),
            "{} failed:\n{}",
            file.display(),
            outcome.summary()
        );
    }
}
