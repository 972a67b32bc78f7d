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

#[test]
fn the_example_in_the_docs_passes() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/SCENARIOS.md");
    let text = std::fs::read_to_string(docs).unwrap();
    let examples: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("[[expect]]"))
        .collect();
    assert!(
        !examples.is_empty(),
        "no complete example in docs/SCENARIOS.md"
    );
    for example in examples {
        let scenario = Scenario::parse(example).unwrap();
        let outcome = run(&scenario, None).unwrap();
        assert!(outcome.passed(), "{}", outcome.summary());
    }
}
