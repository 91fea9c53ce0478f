//! Every ```json block in the operator documentation is a complete apiguard configuration that loads.
//! Blocks that are not configurations use another info string (`text`, `yaml`, `jsonc`).

#![allow(
    clippy::panic,
    reason = "tests: a refused example fails the test loudly"
)]

use apiguard::config::Policy;
use std::path::Path;

fn json_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```json" => current = Some((number + 1, String::new())),
            Some((start, text)) if line.trim_start() == "```" => {
                blocks.push((*start, std::mem::take(text)));
                current = None;
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

fn check(file: &str, min_blocks: usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let markdown = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let blocks = json_blocks(&markdown);
    assert!(
        blocks.len() >= min_blocks,
        "{file}: expected at least {min_blocks} json examples, found {}",
        blocks.len()
    );
    for (line, text) in blocks {
        if let Err(e) = Policy::from_json(text.as_bytes()) {
            panic!("{file}:{line}: example refused: {e}");
        }
    }
}

#[test]
fn every_configuration_example_in_docs_config_loads() {
    check("docs/config.md", 3);
}

#[test]
fn every_configuration_example_in_the_readme_loads() {
    check("README.md", 1);
}

#[test]
fn the_block_finder_sees_blocks_and_their_lines() {
    let blocks = json_blocks("a\n```json\n{}\n```\n```text\nx\n```\n");
    assert_eq!(blocks, vec![(2, "{}\n".to_string())]);
}
