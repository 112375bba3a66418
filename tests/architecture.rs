//! The architecture, checked: the top-level modules of `src/` form a layered graph without
//! cycles (drawn in ARCHITECTURE.md, which must match the code), no function of the
//! dataflow is longer than [`MAX_FN_LINES`], and no process-global mutable state lives
//! outside the metrics registry (`src/telemetry.rs`).
//!
//! These are read from the source text with a small lexer (comments, strings and char
//! literals skipped), so the rules need no extra tool and fail with the offending names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest function (body lines) allowed under `src/dataflow/`.
const MAX_FN_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source with comments, string and char literals blanked (newlines kept), so that
/// braces and paths in them are not read as code.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || (next == Some('#') && b.get(i + 2).is_some_and(|c| *c == '"' || *c == '#'))) {
            // Raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let close: Vec<char> = close.chars().collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            j = (j + close.len()).min(b.len());
            out.extend(b[i..j].iter().map(|c| blank(*c)));
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\''
            && (b.get(i + 2) == Some(&'\'') || (next == Some('\\') && b[i..].iter().skip(2).take(10).any(|c| *c == '\'')))
        {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime.
            let mut j = i + 1;
            if b[j] == '\\' {
                j += 2;
            } else {
                j += 1;
            }
            while j < b.len() && b[j] != '\'' {
                j += 1;
            }
            j = (j + 1).min(b.len());
            out.extend(b[i..j].iter().map(|c| blank(*c)));
            i = j;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The top-level module a file belongs to (`None` for lib.rs and main.rs).
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules a piece of code names through `crate::…` paths (also inside
/// `use crate::{a, b::c}` groups).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split on commas at depth 0.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            found.insert(ident(item.trim()));
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|s| !s.is_empty());
    found
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for f in &files {
        let Some(from) = top_module(f) else { continue };
        let code = code_only(&std::fs::read_to_string(f).unwrap());
        for to in crate_references(&code) {
            if to != from && modules.contains(&to) {
                graph.get_mut(&from).unwrap().insert(to);
            }
        }
    }
    graph
}

/// A cycle of the graph, if any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in &g[n] {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// The graph as the mermaid block of ARCHITECTURE.md.
fn mermaid(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut s = String::from("graph TD\n");
    for (from, tos) in graph {
        for to in tos {
            s.push_str(&format!("  {from} --> {to}\n"));
        }
    }
    s
}

#[test]
fn top_level_modules_form_no_cycle_and_match_architecture_md() {
    let graph = module_graph();
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between top-level modules: {}", cycle.join(" → "));
    }
    let drawn = mermaid(&graph);
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    let block = doc.split("```mermaid\n").nth(1).and_then(|b| b.split("```").next()).unwrap_or_default();
    assert_eq!(block, drawn, "ARCHITECTURE.md's module graph is not the code's: replace its ```mermaid block with\n{drawn}");
}

#[test]
fn no_function_of_the_dataflow_is_longer_than_the_limit() {
    let mut files = Vec::new();
    rust_files(&src().join("dataflow"), &mut files);
    let mut long = Vec::new();
    for f in files {
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        // Unit tests are not the dataflow.
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(at) = line.find("fn ") else { continue };
            if !(at == 0 || !line.as_bytes()[at - 1].is_ascii_alphanumeric() && line.as_bytes()[at - 1] != b'_') {
                continue;
            }
            let name: String = line[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            // The body: from the first `{` after the signature to its matching `}`.
            let mut depth = 0i32;
            let mut started = false;
            let mut end = i;
            'outer: for (j, l) in lines.iter().enumerate().skip(i) {
                for (k, c) in l.char_indices() {
                    if j == i && k < at {
                        continue;
                    }
                    match c {
                        ';' if !started => break 'outer, // a declaration without a body
                        '{' => {
                            depth += 1;
                            started = true;
                        }
                        '}' => {
                            depth -= 1;
                            if started && depth == 0 {
                                end = j;
                                break 'outer;
                            }
                        }
                        _ => {}
                    }
                }
            }
            let length = end.saturating_sub(i) + 1;
            if started && length > MAX_FN_LINES {
                long.push(format!("{}:{} fn {name}: {length} lines", f.strip_prefix(src()).unwrap().display(), i + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions of the dataflow over {MAX_FN_LINES} lines (split them into named steps):\n{}",
        long.join("\n")
    );
}

#[test]
fn no_process_global_mutable_state_outside_the_metrics_registry() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap().to_owned();
        if rel == Path::new("telemetry.rs") {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        let mut previous = "";
        for (i, line) in code.lines().enumerate() {
            let t = line.trim_start();
            let is_static = t.starts_with("static ") || t.starts_with("pub static ") || t.starts_with("pub(crate) static ");
            // The global allocator must be a static, and it holds no state of ours.
            let allocator = std::mem::replace(&mut previous, t) == "#[global_allocator]";
            if (is_static && !allocator && !t.contains(": &str") && !t.contains(": &'static str")) || t.contains("thread_local!")
            {
                found.push(format!("{}:{}: {}", rel.display(), i + 1, t.trim()));
            }
        }
    }
    assert!(found.is_empty(), "process-global state outside src/telemetry.rs (pass a handle instead):\n{}", found.join("\n"));
}

#[test]
fn the_lexer_ignores_braces_and_paths_in_strings_and_comments() {
    let code =
        code_only("let s = \"crate::x { \"; // crate::y {\nlet c = '{'; let r = r#\"crate::z\"#; fn f<'a>(x: &'a str) {}\n");
    assert!(!code.contains("crate::"), "{code}");
    assert_eq!(code.matches('{').count(), 1, "{code}");
    assert_eq!(crate_references("use crate::{a::B, c, d::{e, f}};"), ["a", "c", "d"].iter().map(|s| s.to_string()).collect());
}
