//! The source layout's rule: code is grouped by the process it runs in, and the groups import one
//! another in one direction only (see docs/architecture.md, "Layout by process"):
//!
//! - `sys` (one OS mechanism per file) imports no other group;
//! - `shared` (code the supervisor and children both run) imports only `sys`;
//! - `child` imports `shared` and `sys`;
//! - `supervisor` imports `child` (a forked child runs on into it), `shared` and `sys`.
//!
//! The command line (`cli`, in the binary) may use any of them. A path into a group counts
//! wherever it appears outside a comment: in a `use`, in an expression or in a type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const GROUPS: [&str; 4] = ["sys", "shared", "child", "supervisor"];

fn allowed(from: &str) -> &'static [&'static str] {
    match from {
        "sys" => &[],
        "shared" => &["sys"],
        "child" => &["shared", "sys"],
        "supervisor" => &["child", "shared", "sys"],
        _ => &GROUPS,
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The group a source file belongs to: `src/shared.rs` and everything under `src/shared/` are
/// `shared`; `lib.rs` and `main.rs` are the crate root.
fn group_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("file under src");
    let first = rel.components().next().expect("non-empty path");
    first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// Every group a line's code (not its comment) names with a `crate::` path, and whether it uses
/// a grouped `use crate::{...}`, which this check cannot read and so refuses.
fn groups_named(line: &str) -> (Vec<&'static str>, bool) {
    let code = line.split("//").next().unwrap_or("");
    let mut named = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if rest.starts_with('{') {
            return (named, true);
        }
        for g in GROUPS {
            if rest.starts_with(g) && !rest[g.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                named.push(g);
            }
        }
    }
    (named, false)
}

#[test]
fn groups_import_each_other_in_one_direction_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut edges: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for file in &files {
        let group = group_of(&src, file);
        if !GROUPS.contains(&group.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("source is readable");
        for (n, line) in text.lines().enumerate() {
            let (named, grouped) = groups_named(line);
            let here = format!("{}:{}", file.strip_prefix(&src).unwrap().display(), n + 1);
            if grouped {
                wrong.push(format!(
                    "{here}: `use crate::{{...}}` hides which groups it imports; name each path"
                ));
            }
            for g in named {
                if g == group {
                    continue;
                }
                *edges.entry((group.clone(), g)).or_default() += 1;
                if !allowed(&group).contains(&g) {
                    wrong.push(format!("{here}: `{group}` may not import `{g}`: {}", line.trim()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layout rule broken:\n{}", wrong.join("\n"));
    // The check saw the groups it is about: a rename that hid every file from it would pass.
    for g in GROUPS {
        assert!(
            files.iter().any(|f| group_of(&src, f) == g),
            "no source file in group `{g}`"
        );
    }
    assert!(edges.contains_key(&("supervisor".to_owned(), "child")), "{edges:?}");
}

#[test]
fn the_check_reads_paths_the_way_the_compiler_does() {
    assert_eq!(
        groups_named("use crate::shared::config::Config;"),
        (vec!["shared"], false)
    );
    assert_eq!(
        groups_named("crate::sys::pipe()?; // crate::child is only mentioned"),
        (vec!["sys"], false)
    );
    assert_eq!(groups_named("let x = crate::system_thing;"), (vec![], false));
    assert_eq!(groups_named("use crate::{child, sys};"), (vec![], true));
    assert_eq!(
        groups_named("crate::child::run(crate::supervisor::x)"),
        (vec!["child", "supervisor"], false)
    );
}

/// No source file of the host or the SDK is a warehouse: past this many lines a file holds more
/// than one thing a reader has to keep in mind, and the layout's groups stop saying where code is.
const MAX_LINES: usize = 700;

#[test]
fn no_source_file_is_a_warehouse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("../plugin-api/src"), &mut files);
    files.sort();
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).expect("source is readable").lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(files.len() > 40, "found only {} source files", files.len());
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines; split by what the code is about:\n{}",
        long.join("\n")
    );
}
