//! Syntax check of every Bicep file under `infra/` with the tree-sitter-bicep grammar.
//!
//! No Bicep compiler can be had offline (see docs/deploy.md), so this is the strongest check CI
//! can run here: any ERROR or MISSING node fails the test with its file, line and column. The
//! grammar (1.1.0, the newest on crates.io) has no rule for the `extension <alias>` statement
//! that the Microsoft Graph extension needs, so exactly that statement is handled: the line is
//! checked against its own small rule (and its alias against `infra/bicepconfig.json`) and then
//! blanked before parsing. Nothing else is masked in `.bicep` files.
//!
//! `.bicepparam` files are checked too. The grammar has `using` but not the parameter
//! assignment `param <name> = <value>` (no type), which is `var <name> = <value>` under another
//! keyword: so, in `.bicepparam` files only, a line-leading `param` keyword is read as `var`
//! (padded, positions kept) and the values are parsed as ordinary Bicep expressions.

use std::path::{Path, PathBuf};

use tree_sitter::{Node, Parser, Tree};

fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra")
}

/// Every `.bicep` and `.bicepparam` file under `dir`, sorted for stable output.
fn bicep_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("bicep" | "bicepparam")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The one statement the grammar lacks: `extension <identifier>` alone on its line.
/// Returns the alias when `line` is such a statement.
fn extension_alias(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("extension")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let alias = rest.trim();
    let mut chars = alias.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(alias)
}

/// Blanks `extension <alias>` lines (same byte length, so positions stay true) and returns the
/// aliases found. Any other use of the keyword is left for the parser to reject.
pub(crate) fn mask_extensions(source: &str) -> (String, Vec<String>) {
    let mut masked = String::with_capacity(source.len());
    let mut aliases = Vec::new();
    for line in source.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if let Some(alias) = extension_alias(body) {
            aliases.push(alias.to_string());
            masked.push_str(&" ".repeat(body.len()));
            masked.push_str(&line[body.len()..]);
        } else {
            masked.push_str(line);
        }
    }
    (masked, aliases)
}

fn parse(source: &str) -> Tree {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_bicep::LANGUAGE.into())
        .expect("tree-sitter-bicep grammar loads");
    parser.parse(source, None).expect("parser returns a tree")
}

/// Every ERROR / MISSING node as "line:col: what".
fn syntax_errors(tree: &Tree, source: &str) -> Vec<String> {
    fn walk(node: Node, source: &str, out: &mut Vec<String>) {
        if node.is_error() || node.is_missing() {
            let p = node.start_position();
            let what = if node.is_missing() {
                format!("missing {}", node.kind())
            } else {
                let text: String = source[node.byte_range()].chars().take(60).collect();
                format!("cannot parse `{}`", text.replace('\n', "\\n"))
            };
            out.push(format!("{}:{}: {what}", p.row + 1, p.column + 1));
            // An ERROR node's children only repeat the same problem.
            return;
        }
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            walk(child, source, out);
        }
    }
    let mut out = Vec::new();
    walk(tree.root_node(), source, &mut out);
    out
}

/// The extension aliases `infra/bicepconfig.json` declares.
fn configured_extensions() -> Vec<String> {
    let path = infra_dir().join("bicepconfig.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    json.get("extensions")
        .and_then(|e| e.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// `.bicepparam` only: `param x = v` lines become `var   x = v` (same length).
pub(crate) fn bicepparam_as_bicep(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let rest = &line[indent..];
        if rest.starts_with("param") && rest[5..].starts_with(char::is_whitespace) {
            out.push_str(&line[..indent]);
            out.push_str("var  ");
            out.push_str(&rest[5..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Checks one file's text (`.bicepparam` when `is_param_file`); returns its problems.
fn check_file_source(source: &str, is_param_file: bool, known_aliases: &[String]) -> Vec<String> {
    if is_param_file {
        check_source(&bicepparam_as_bicep(source), known_aliases)
    } else {
        check_source(source, known_aliases)
    }
}

/// Checks one `.bicep` file's text; returns its problems.
fn check_source(source: &str, known_aliases: &[String]) -> Vec<String> {
    let (masked, aliases) = mask_extensions(source);
    let mut problems: Vec<String> = aliases
        .iter()
        .filter(|a| !known_aliases.contains(a))
        .map(|a| format!("extension `{a}` is not declared in infra/bicepconfig.json"))
        .collect();
    problems.extend(syntax_errors(&parse(&masked), &masked));
    problems
}

#[test]
fn every_bicep_file_parses_without_syntax_errors() {
    let files = bicep_files(&infra_dir());
    assert!(
        files.iter().any(|f| f.ends_with("main.bicep")),
        "infra/main.bicep not found (looked under {})",
        infra_dir().display()
    );
    let aliases = configured_extensions();
    let mut failures = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let is_param_file = file.extension().is_some_and(|e| e == "bicepparam");
        for problem in check_file_source(&source, is_param_file, &aliases) {
            failures.push(format!("{}:{problem}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "Bicep syntax errors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn graph_extension_is_declared_in_bicepconfig() {
    let aliases = configured_extensions();
    assert!(
        aliases.iter().any(|a| a == "microsoftGraphV1"),
        "infra/bicepconfig.json must declare the microsoftGraphV1 extension, found {aliases:?}"
    );
}

#[test]
fn checker_reports_broken_syntax_with_a_position() {
    let aliases = vec!["microsoftGraphV1".to_string()];
    // A typo in a keyword, and an unclosed object: both must be reported.
    let broken = "paramm location string\n\nresource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n";
    let problems = check_source(broken, &aliases);
    assert!(!problems.is_empty(), "broken Bicep passed the check");
    assert!(
        problems.iter().any(|p| p.starts_with("1:")),
        "the keyword typo on line 1 was not reported: {problems:?}"
    );
}

#[test]
fn only_the_plain_extension_statement_is_masked() {
    let aliases = vec!["microsoftGraphV1".to_string()];
    let ok = "extension microsoftGraphV1\n\nparam principalId string\n";
    assert_eq!(check_source(ok, &aliases), Vec::<String>::new());
    // Unknown alias: named.
    let unknown = "extension somethingElse\nparam p string\n";
    let problems = check_source(unknown, &aliases);
    assert!(
        problems.iter().any(|p| p.contains("somethingElse")),
        "{problems:?}"
    );
    // Other forms are not masked, so the grammar rejects them.
    for form in [
        "extension microsoftGraphV1 as graph\n",
        "extension 'br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0'\n",
    ] {
        assert!(
            !check_source(form, &aliases).is_empty(),
            "`{}` should not pass unchecked",
            form.trim()
        );
    }
}

#[test]
fn masking_keeps_positions() {
    let src = "extension microsoftGraphV1\nparamm x string\n";
    let (masked, aliases) = mask_extensions(src);
    assert_eq!(masked.len(), src.len());
    assert_eq!(aliases, vec!["microsoftGraphV1".to_string()]);
    let problems = syntax_errors(&parse(&masked), &masked);
    assert!(
        problems.iter().any(|p| p.starts_with("2:")),
        "error must be reported on line 2: {problems:?}"
    );
}

#[test]
fn bicepparam_values_are_checked_as_expressions() {
    let aliases: Vec<String> = Vec::new();
    let good =
        "using './main.bicep'\n\nparam name = 'x'\nparam list = [\n  {\n    name: 'a'\n  }\n]\n";
    assert_eq!(
        check_file_source(good, true, &aliases),
        Vec::<String>::new()
    );
    let bad = "using './main.bicep'\nparam list = [\n  {\n    name: 'a'\n";
    assert!(!check_file_source(bad, true, &aliases).is_empty());
    // The rewrite is for .bicepparam files only: in a .bicep file this is an error.
    assert!(!check_file_source("param name = 'x'\n", false, &aliases).is_empty());
}
