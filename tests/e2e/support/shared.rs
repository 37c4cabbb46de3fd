//! Where the shared reference material (`../shared` beside the repository: SchemaStore schemas,
//! Bicep type data, ...) is found. CI clones the repository with `../shared` next to it; in a git
//! worktree the main checkout's `../shared` is tried too; an environment variable overrides both.

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<repo>/../shared/<sub>` (or `<main checkout>/../shared/<sub>` for a worktree, or the
/// directory in `env_var`): the first candidate `is_complete` accepts. Panics naming every
/// place tried when none is.
pub fn shared_dir(sub: &str, env_var: &str, is_complete: impl Fn(&Path) -> bool) -> PathBuf {
    let mut tried = Vec::new();
    if let Ok(d) = std::env::var(env_var) {
        tried.push(PathBuf::from(d));
    }
    tried.push(repo_root().join("../shared").join(sub));
    // A worktree's `.git` is a file: `gitdir: <main>/.git/worktrees/<name>`.
    if let Ok(text) = std::fs::read_to_string(repo_root().join(".git"))
        && let Some(gitdir) = text.trim().strip_prefix("gitdir:")
    {
        let gitdir = PathBuf::from(gitdir.trim());
        if let Some(main) = gitdir
            .ancestors()
            .find(|p| p.file_name().is_some_and(|n| n == ".git"))
            && let Some(main_root) = main.parent()
        {
            tried.push(main_root.join("../shared").join(sub));
        }
    }
    tried
        .iter()
        .find(|d| is_complete(d))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "shared/{sub} is not in any of {tried:?}; put it at ../shared/{sub} next to the \
                 repository or set {env_var}"
            )
        })
}
