//! Every public name of the SDK is documented in the plugin author guide: each public function,
//! type, trait, constant and exported macro of `src/` (the ABI module and hidden names aside) and
//! each variant of its public enums is mentioned in `docs/plugin-author-guide.md`. The names are
//! read from the sources, so a call added without a word in the guide fails here.

use std::path::Path;

/// Whether `word` occurs in `text` as a whole identifier.
fn mentions(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The identifier that starts `rest`.
fn ident(rest: &str) -> &str {
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The public names declared in one source file, as (kind, name).
fn public_names(source: &str) -> Vec<(&'static str, String)> {
    // Unit tests come last in a file and declare nothing public.
    let source = source.split("#[cfg(test)]").next().unwrap_or("");
    let lines: Vec<&str> = source.lines().collect();
    let mut names = Vec::new();
    let mut in_enum: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        // The attributes and doc comments right above the line.
        let above = lines[..i]
            .iter()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("#[") || l.starts_with("//")
            })
            .copied();
        let attrs = above.collect::<Vec<_>>().join(" ");
        if attrs.contains("doc(hidden)") {
            continue;
        }
        if let Some(e) = &in_enum {
            if *line == "}" {
                in_enum = None;
            } else if let Some(rest) = line.strip_prefix("    ") {
                if rest.starts_with(|c: char| c.is_ascii_uppercase()) {
                    names.push(("variant", format!("{e}::{}", ident(rest))));
                }
            }
            continue;
        }
        let t = line.trim_start();
        let item = ["pub fn ", "pub const fn ", "pub unsafe fn ", "pub const "]
            .iter()
            .find_map(|p| t.strip_prefix(p).map(|r| ("item", r)))
            .or_else(|| {
                ["pub struct ", "pub enum ", "pub trait ", "pub unsafe trait "]
                    .iter()
                    .find_map(|p| line.strip_prefix(p).map(|r| ("type", r)))
            })
            .or_else(|| {
                let exported = attrs.contains("#[macro_export]");
                exported
                    .then(|| line.strip_prefix("macro_rules! ").map(|r| ("macro", r)))
                    .flatten()
            });
        if let Some((kind, rest)) = item {
            let name = ident(rest).to_owned();
            if name.starts_with("__") {
                continue;
            }
            if line.starts_with("pub enum ") {
                in_enum = Some(name.clone());
            }
            names.push((kind, name));
        }
    }
    names
}

#[test]
fn the_guide_mentions_every_public_name_of_the_sdk() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("../docs/plugin-author-guide.md")).expect("the guide");
    let mut files: Vec<_> = std::fs::read_dir(root.join("src"))
        .expect("src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs") && !p.ends_with("abi.rs"))
        .collect();
    files.sort();
    let mut seen = 0;
    let mut missing = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("source");
        for (kind, name) in public_names(&source) {
            seen += 1;
            // A variant counts when its own name is mentioned (`Backoff`, `NoFreeSlot`).
            let word = name.rsplit("::").next().unwrap_or(&name);
            if !mentions(&guide, word) {
                let at = file.strip_prefix(root).unwrap_or(&file);
                missing.push(format!("{kind} {name} ({})", at.display()));
            }
        }
    }
    assert!(
        seen > 100,
        "only {seen} public names found: has the SDK's layout changed?"
    );
    assert!(
        missing.is_empty(),
        "not in docs/plugin-author-guide.md:\n{}",
        missing.join("\n")
    );
}

#[test]
fn names_are_read_as_declared() {
    let source = "pub enum E {\n    A(u8),\n    #[error(\"x\")]\n    B { x: u8 },\n}\n#[doc(hidden)]\npub fn hidden() {}\npub fn shown() {}\n    pub(crate) fn internal() {}\n#[macro_export]\nmacro_rules! m { () => {} }\n";
    let names: Vec<String> = public_names(source).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["E", "E::A", "E::B", "shown", "m"]);
}
