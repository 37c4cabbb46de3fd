//! A Bicep file parsed with tree-sitter-bicep, as the infra tests share it
//! (`infra_contract.rs`, `bicep_types.rs`): its text with `extension <alias>` lines blanked (the
//! statement the grammar lacks, see `bicep_syntax.rs`), its tree, positions as `file:line`, and
//! the real templates with one edit applied for the tests that break a copy.

use tree_sitter::{Node, Parser, Tree};

pub struct BicepFile {
    /// Path relative to `infra/`, '/' separators.
    pub rel: String,
    pub text: String,
    pub tree: Tree,
}

impl BicepFile {
    /// Parses `source`; syntax errors are left in the tree (`bicep_syntax.rs` reports them).
    pub fn parse(rel: &str, source: &str) -> Self {
        let text = crate::bicep_syntax::mask_extensions(source).0;
        let mut parser = Parser::new();
        parser
            .set_language(&tree_sitter_bicep::LANGUAGE.into())
            .expect("tree-sitter-bicep grammar loads");
        let tree = parser.parse(&text, None).expect("parser returns a tree");
        BicepFile {
            rel: rel.to_string(),
            text,
            tree,
        }
    }

    pub fn text_of(&self, n: Node) -> &str {
        &self.text[n.byte_range()]
    }

    /// `file:line` of a node.
    pub fn at(&self, n: Node) -> String {
        format!("{}:{}", self.rel, n.start_position().row + 1)
    }

    /// Top-level statements of one kind.
    pub fn statements(&self, kind: &str) -> Vec<Node<'_>> {
        let root = self.tree.root_node();
        let mut cursor = root.walk();
        root.named_children(&mut cursor)
            .filter(|n| n.kind() == kind)
            .collect()
    }

    /// The declared name (first identifier) of a declaration.
    pub fn decl_name(&self, decl: Node) -> String {
        let mut cursor = decl.walk();
        decl.named_children(&mut cursor)
            .find(|c| c.kind() == "identifier")
            .map(|c| self.text_of(c).to_string())
            .unwrap_or_default()
    }

    /// A top-level param/var/resource/module declaration by name.
    pub fn find_decl(&self, name: &str) -> Option<Node<'_>> {
        let root = self.tree.root_node();
        let mut cursor = root.walk();
        root.named_children(&mut cursor).find(|n| {
            matches!(
                n.kind(),
                "parameter_declaration"
                    | "variable_declaration"
                    | "resource_declaration"
                    | "module_declaration"
            ) && self.decl_name(*n) == name
        })
    }

    /// Whether a resource declaration is `existing` (a reference, not a deployment).
    pub fn is_existing(&self, decl: Node) -> bool {
        let mut cursor = decl.walk();
        decl.children(&mut cursor).any(|c| c.kind() == "existing")
    }
}

/// `sources` (path relative to infra/, text) with `from` replaced by `to` once in `rel`; the edit
/// must apply, so a test cannot silently check the unbroken templates.
pub fn with_edit(
    sources: Vec<(String, String)>,
    rel: &str,
    from: &str,
    to: &str,
) -> Vec<(String, String)> {
    sources
        .into_iter()
        .map(|(r, text)| {
            if r == rel {
                assert!(
                    text.contains(from),
                    "test setup: `{from}` not found in infra/{rel}"
                );
                let edited = text.replacen(from, to, 1);
                (r, edited)
            } else {
                (r, text)
            }
        })
        .collect()
}
