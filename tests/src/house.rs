//! The house's measures, read from the source: import circles between modules, files
//! over a length, functions over a length, and the functions that touch a daemon's text
//! answers (`Reply::Lines`, `Reply::Text`): the typed contract leaves the console only its
//! documented fallbacks for daemons of an older protocol.
//!
//! Every crate root of the workspace (`src/lib.rs`, a binary crate's `src/main.rs`,
//! `src/bin/NAME/main.rs`) is parsed with `syn`. A module is a file (`a/b.rs` and
//! `a/b/mod.rs` are `a::b`). An edge goes from a module to another when it names it in a
//! `use` or a path (`crate::…`, `super::…`, `self::…`), resolved to the longest module
//! prefix. A module naming one of its own ancestors is not an edge (a child may lean on its
//! parent's items; the parent declaring or re-exporting its children would otherwise close
//! a circle with every child); test code (`#[cfg(test)]`) is not read. A circle is a
//! strongly connected set of two or more modules of one crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use syn::spanned::Spanned;
use syn::visit::Visit;

/// One crate root: its name (`walb-daemon`, `wdevc`), its root file and its directory.
#[derive(Debug, Clone)]
pub struct Root {
    /// `crate-dir` or `crate-dir/bin-name`.
    pub name: String,
    /// Directory the module paths are relative to.
    pub dir: PathBuf,
}

/// What the source says.
#[derive(Debug, Default)]
pub struct Measures {
    /// Per crate root, its circles: each a sorted list of module paths.
    pub circles: BTreeMap<String, Vec<Vec<String>>>,
    /// Files of `src` and their line counts.
    pub file_lines: BTreeMap<String, usize>,
    /// Functions (`file::name`, the impl's type when there is one) and their line counts.
    pub fn_lines: BTreeMap<String, usize>,
    /// Functions (`file::name`) that name `Reply::Lines` or `Reply::Text` (outside tests).
    pub text_replies: BTreeSet<String>,
}

/// The workspace's crate roots below `ws` (the directory of the workspace `Cargo.toml`).
pub fn roots(ws: &Path) -> Result<Vec<Root>> {
    let mut out = Vec::new();
    for krate in [
        "kernel/core",
        "kernel/device",
        "kernel/wdevc",
        "wire",
        "daemon",
        "console",
        "tests",
    ] {
        let src = ws.join(krate).join("src");
        if src.join("lib.rs").exists() || src.join("main.rs").exists() {
            out.push(Root {
                name: krate.into(),
                dir: src.clone(),
            });
        }
        let bin = src.join("bin");
        if bin.is_dir() {
            for e in std::fs::read_dir(&bin).with_context(|| format!("{}", bin.display()))? {
                let p = e?.path();
                if p.join("main.rs").exists() {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    out.push(Root {
                        name: format!("{krate}/{}", name.unwrap_or_default()),
                        dir: p,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The module path of `file` below a root directory (`None` for the root file itself
/// gives the empty path).
fn module_of(dir: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(dir).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if !matches!(stem.as_str(), "mod" | "lib" | "main") {
            parts.push(stem);
        }
    }
    parts
}

/// The `.rs` files of a root: its directory, without `bin/` below a library root.
fn files_of(root: &Root) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                if d == root.dir && p.file_name().is_some_and(|n| n == "bin") {
                    continue;
                }
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                if d == root.dir
                    && p.file_name().is_some_and(|n| n == "main.rs")
                    && root.dir.join("lib.rs").exists()
                {
                    continue;
                }
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                l.tokens
                    .to_string()
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == "test")
            })
    })
}

/// Collects the paths a file names, and its functions' lengths.
#[derive(Default)]
struct Reader {
    paths: Vec<Vec<String>>,
    fns: Vec<(String, usize)>,
    ty: Option<String>,
    /// The function being read.
    func: Option<String>,
    /// Functions naming a text reply.
    text_replies: BTreeSet<String>,
}

impl Reader {
    fn lines(span: proc_macro2::Span) -> usize {
        span.end().line.saturating_sub(span.start().line) + 1
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, t: &syn::UseTree) {
        match t {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                full.push(n.ident.to_string());
                self.paths.push(full);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                self.paths.push(full);
            }
            syn::UseTree::Glob(_) => self.paths.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

/// `Reply::Lines` or `Reply::Text`: a daemon's text answer.
fn is_text_reply(reply: &str, kind: &str) -> bool {
    reply == "Reply" && (kind == "Lines" || kind == "Text")
}

/// Whether `tokens` (a macro's, groups included) hold `Reply :: Lines` or `Reply :: Text`.
fn names_text_reply(tokens: proc_macro2::TokenStream) -> bool {
    use proc_macro2::TokenTree as T;
    let tts: Vec<T> = tokens.into_iter().collect();
    tts.iter().enumerate().any(|(i, t)| match t {
        T::Group(g) => names_text_reply(g.stream()),
        T::Ident(reply) => match (tts.get(i + 1), tts.get(i + 2), tts.get(i + 3)) {
            (Some(T::Punct(a)), Some(T::Punct(b)), Some(T::Ident(kind))) => {
                a.as_char() == ':'
                    && b.as_char() == ':'
                    && is_text_reply(&reply.to_string(), &kind.to_string())
            }
            _ => false,
        },
        _ => false,
    })
}

impl Reader {
    fn text_reply(&mut self) {
        self.text_replies
            .insert(self.func.clone().unwrap_or_else(|| "(outside a fn)".into()));
    }
}

impl<'ast> Visit<'ast> for Reader {
    fn visit_item(&mut self, i: &'ast syn::Item) {
        let attrs = match i {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(x) => &x.attrs,
            syn::Item::Use(u) => &u.attrs,
            _ => return syn::visit::visit_item(self, i),
        };
        if !is_test(attrs) {
            syn::visit::visit_item(self, i);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let names: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if let [.., reply, kind] = &names[..] {
            if is_text_reply(reply, kind) {
                self.text_reply();
            }
        }
        self.paths.push(names);
        syn::visit::visit_path(self, p);
    }

    /// A macro's tokens are not parsed: `Reply :: Lines` is looked for among them.
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if names_text_reply(m.tokens.clone()) {
            self.text_reply();
        }
        syn::visit::visit_macro(self, m);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        let ty = match &*i.self_ty {
            syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
            _ => None,
        };
        let old = std::mem::replace(&mut self.ty, ty);
        syn::visit::visit_item_impl(self, i);
        self.ty = old;
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let name = f.sig.ident.to_string();
        self.fns.push((name.clone(), Self::lines(f.block.span())));
        let old = self.func.replace(name);
        syn::visit::visit_item_fn(self, f);
        self.func = old;
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_test(&f.attrs) {
            return;
        }
        let name = match &self.ty {
            Some(t) => format!("{t}::{}", f.sig.ident),
            None => f.sig.ident.to_string(),
        };
        self.fns.push((name.clone(), Self::lines(f.block.span())));
        let old = self.func.replace(name);
        syn::visit::visit_impl_item_fn(self, f);
        self.func = old;
    }
}

/// Resolves a named path from module `from` to the module it lands in.
fn resolve(
    from: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &path[1..];
        }
        Some("super") => {
            base = from.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some("self") => {
            base = from.to_vec();
            rest = &path[1..];
        }
        _ => {
            // A child module named from its parent (`child::f` after `mod child;`).
            let mut m = from.to_vec();
            m.push(path.first()?.clone());
            if path.len() > 1 && modules.contains(&m) {
                base = from.to_vec();
            } else {
                return None;
            }
        }
    }
    let mut best = None;
    for s in rest {
        base.push(s.clone());
        if modules.contains(&base) {
            best = Some(base.clone());
        }
    }
    best
}

/// Tarjan's strongly connected components of two or more nodes.
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        out: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn go(&mut self, v: &'a Vec<String>) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            if let Some(ws) = self.edges.get(v) {
                for w in ws {
                    if !self.index.contains_key(w) {
                        self.go(w);
                        let l = self.low[w].min(self.low[v]);
                        self.low.insert(v, l);
                    } else if self.on.contains(w) {
                        let l = self.index[w].min(self.low[v]);
                        self.low.insert(v, l);
                    }
                }
            }
            if self.low[v] == self.index[v] {
                let mut c = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    c.push(w.join("::"));
                    if w == v {
                        break;
                    }
                }
                if c.len() > 1 {
                    c.sort();
                    self.out.push(c);
                }
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.go(v);
        }
    }
    t.out.sort();
    t.out
}

/// Reads every crate root below the workspace directory `ws`.
pub fn measure(ws: &Path) -> Result<Measures> {
    let mut m = Measures::default();
    for root in roots(ws)? {
        let files = files_of(&root)?;
        let modules: BTreeSet<Vec<String>> =
            files.iter().map(|f| module_of(&root.dir, f)).collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for f in &files {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let rel = f
                .strip_prefix(ws)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            m.file_lines.insert(rel.clone(), text.lines().count());
            let ast = syn::parse_file(&text).with_context(|| format!("parsing {rel}"))?;
            let mut r = Reader::default();
            r.visit_file(&ast);
            for (name, lines) in r.fns {
                m.fn_lines.insert(format!("{rel}::{name}"), lines);
            }
            for name in r.text_replies {
                m.text_replies.insert(format!("{rel}::{name}"));
            }
            let from = module_of(&root.dir, f);
            let out = edges.entry(from.clone()).or_default();
            for p in &r.paths {
                if let Some(to) = resolve(&from, p, &modules) {
                    // Naming itself, or an ancestor, is not an edge.
                    if !from.starts_with(&to) {
                        out.insert(to);
                    }
                }
            }
        }
        let c = circles(&edges);
        if !c.is_empty() {
            m.circles.insert(root.name.clone(), c);
        }
    }
    Ok(m)
}

/// The crate that may hold unsafe code, in the modules its root names with
/// `#[allow(unsafe_code)]` under `#![deny(unsafe_code)]`.
pub const UNSAFE_CRATE: &str = "kernel/device";

/// Where the unsafe rule does not hold: a crate root (a `lib.rs`, a `main.rs`, a file of
/// `src/bin`) without `#![forbid(unsafe_code)]` — [`UNSAFE_CRATE`]'s with
/// `#![deny(unsafe_code)]` —, or an `#[allow(unsafe_code)]` anywhere but that root.
pub fn unsafe_rule(ws: &Path) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let roots = roots(ws)?;
    for r in &roots {
        let mut files: Vec<PathBuf> = ["lib.rs", "main.rs"]
            .iter()
            .map(|f| r.dir.join(f))
            .filter(|p| p.exists())
            .collect();
        let bin = r.dir.join("bin");
        if bin.is_dir() {
            for e in std::fs::read_dir(&bin).with_context(|| format!("{}", bin.display()))? {
                let p = e?.path();
                if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        let want = if r.name == UNSAFE_CRATE {
            "#![deny(unsafe_code)]"
        } else {
            "#![forbid(unsafe_code)]"
        };
        for f in files {
            let text = std::fs::read_to_string(&f).with_context(|| format!("{}", f.display()))?;
            if !text.lines().any(|l| l.trim() == want) {
                let rel = f.strip_prefix(ws).unwrap_or(&f).display().to_string();
                bad.push(format!("{rel} lacks {want}"));
            }
        }
    }
    let allowed = ws.join(UNSAFE_CRATE).join("src").join("lib.rs");
    let mut stack: Vec<PathBuf> = roots.into_iter().map(|r| r.dir).collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && p != allowed {
                let text =
                    std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
                let allows = text.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with("#[allow(unsafe_code") || l.starts_with("#![allow(unsafe_code")
                });
                if allows {
                    let rel = p.strip_prefix(ws).unwrap_or(&p).display().to_string();
                    bad.push(format!("{rel} allows unsafe code"));
                }
            }
        }
    }
    bad.sort();
    bad.dedup();
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split("::")
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn paths_resolve_to_the_longest_module_prefix() {
        let modules: BTreeSet<Vec<String>> = ["", "a", "a::b", "c"].iter().map(|s| v(s)).collect();
        let r = |from: &str, p: &str| resolve(&v(from), &v(p), &modules).map(|m| m.join("::"));
        assert_eq!(r("c", "crate::a::b::f"), Some("a::b".into()));
        assert_eq!(r("a::b", "super::f"), None);
        assert_eq!(r("a::b", "super::super::c::g"), Some("c".into()));
        assert_eq!(r("a", "b::f"), Some("a::b".into()));
        assert_eq!(r("a", "std::f"), None);
        assert_eq!(r("a", "self::b::T"), Some("a::b".into()));
    }

    #[test]
    fn text_replies_are_found_by_function_outside_tests() {
        let src = r#"
            impl Client {
                fn status(r: Reply) -> Vec<String> {
                    match r { walb_wire::Reply::Lines(l) => l, _ => vec![] }
                }
                fn state(r: Reply) -> bool { matches!(r, Reply::State(_)) }
            }
            fn parse(r: Reply) -> Option<String> {
                if let Reply::Text(t) = r { Some(t) } else { None }
            }
            fn sneaky(r: &Reply) -> bool { matches!(r, walb_wire::Reply::Lines(_)) }
            fn fine(r: &Reply) -> bool { matches!(r, Reply::Status(_) | Reply::Names(_)) }
            #[cfg(test)]
            mod tests { fn fake() -> Reply { Reply::Lines(vec![]) } }
        "#;
        let mut r = Reader::default();
        r.visit_file(&syn::parse_file(src).unwrap());
        let found: Vec<&str> = r.text_replies.iter().map(String::as_str).collect();
        assert_eq!(found, ["Client::status", "parse", "sneaky"]);
    }

    #[test]
    fn a_circle_is_found_and_a_chain_is_not() {
        let mut e: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        let mut edge = |a: &str, b: &str| {
            e.entry(v(a)).or_default().insert(v(b));
        };
        edge("x", "y");
        edge("y", "z");
        edge("z", "x");
        edge("z", "w");
        edge("w", "q");
        assert_eq!(circles(&e), vec![vec!["x", "y", "z"]]);
    }
}
