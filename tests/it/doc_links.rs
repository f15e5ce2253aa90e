//! The README and the guide (`docs/`) have no dead relative link: every link and image to
//! a file or directory of the repository names one that exists, and every `#anchor` names
//! a heading of the target Markdown file, slugged as GitHub slugs it. Links to other sites
//! (`http:`, `https:`, `mailto:`) are not followed. Every page of the guide is also
//! compiled by the crate's doctests, so its Rust examples build.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pages checked under `root`: `README.md` and every `.md` file under `docs/` (build
/// output directories named `target` are skipped), sorted.
fn pages(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    walk(&path, found);
                }
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    let mut found = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut found);
    found.sort();
    found
}

/// GitHub's anchor for a heading whose text is `text`: lowercased, every character that is
/// not a letter, a digit, `-` or `_` dropped, and each space made a `-`.
fn slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// What a page offers and asks for.
#[derive(Debug, Default)]
struct Page {
    /// Its headings' anchors; a repeated heading gets `-1`, `-2`, … as on GitHub.
    anchors: Vec<String>,
    /// Every link and image destination, with the line it is on.
    links: Vec<(String, usize)>,
}

/// Read the headings and links of Markdown `text`.
fn parse(text: &str) -> Page {
    let mut page = Page::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut heading: Option<String> = None;
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                let count = seen.entry(base.clone()).or_insert(0);
                page.anchors.push(match *count {
                    0 => base,
                    n => format!("{base}-{n}"),
                });
                *count += 1;
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                let line = text[..range.start].matches('\n').count() + 1;
                page.links.push((dest_url.into_string(), line));
            }
            _ => {}
        }
    }
    page
}

/// Every dead relative link or anchor in `pages`, one line each (`page:line: ...`).
fn dead_links(root: &Path, pages: &[PathBuf]) -> Vec<String> {
    let mut parsed: HashMap<PathBuf, Page> = HashMap::new();
    let mut anchors_of = |path: &Path| -> Option<Vec<String>> {
        if !parsed.contains_key(path) {
            let text = fs::read_to_string(path).ok()?;
            parsed.insert(path.to_path_buf(), parse(&text));
        }
        parsed.get(path).map(|p| p.anchors.clone())
    };
    let mut dead = Vec::new();
    for page in pages {
        let name = page
            .strip_prefix(root)
            .unwrap_or(page)
            .display()
            .to_string();
        let Ok(text) = fs::read_to_string(page) else {
            dead.push(format!("{name}: cannot be read"));
            continue;
        };
        for (link, line) in parse(&text).links {
            if ["http://", "https://", "mailto:"]
                .iter()
                .any(|scheme| link.starts_with(scheme))
            {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap_or(root).join(file)
            };
            if !target.exists() {
                dead.push(format!("{name}:{line}: {link}: no such file or directory"));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            // A directory is shown with its README; anchors in other files (`#L10` in
            // source) are not headings.
            let markdown = if target.is_dir() {
                target.join("README.md")
            } else {
                target
            };
            if markdown.extension().is_none_or(|e| e != "md") {
                continue;
            }
            match anchors_of(&markdown) {
                Some(anchors) if anchors.iter().any(|a| a == anchor) => {}
                Some(_) => dead.push(format!("{name}:{line}: {link}: no heading #{anchor}")),
                None => dead.push(format!(
                    "{name}:{line}: {link}: no README to hold #{anchor}"
                )),
            }
        }
    }
    dead
}

#[test]
fn readme_and_guide_have_no_dead_relative_link_or_anchor() {
    let root = root();
    let pages = pages(&root);
    assert!(
        pages.len() > 5,
        "too few pages found under {}: {pages:?}",
        root.display()
    );
    let dead = dead_links(&root, &pages);
    assert!(
        dead.is_empty(),
        "{} dead link(s):\n{}",
        dead.len(),
        dead.join("\n")
    );
}

#[test]
fn every_guide_page_is_compiled_as_a_doctest() {
    let root = root();
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let mut missing = Vec::new();
    for entry in fs::read_dir(root.join("docs")).expect("docs/").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().expect("a file name").to_string_lossy();
            if !lib.contains(&format!("include_str!(\"../docs/{name}\")")) {
                missing.push(name.into_owned());
            }
        }
    }
    assert!(
        lib.contains("include_str!(\"../README.md\")"),
        "src/lib.rs does not compile the README's examples"
    );
    assert!(
        missing.is_empty(),
        "src/lib.rs does not include these guide pages as doctests: {missing:?}"
    );
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(slug("How the loop works"), "how-the-loop-works");
    assert_eq!(
        slug("cargo bench: reactor vs thread-per-client vs tokio"),
        "cargo-bench-reactor-vs-thread-per-client-vs-tokio"
    );
    assert_eq!(
        slug("Our proxy against HAProxy: benches/peers.sh --proxy"),
        "our-proxy-against-haproxy-benchespeerssh---proxy"
    );
    assert_eq!(
        slug("Why rustls, buffered, and ring"),
        "why-rustls-buffered-and-ring"
    );
    assert_eq!(slug("Two models, one handler"), "two-models-one-handler");
    assert_eq!(slug("snake_case and Ünïcode"), "snake_case-and-ünïcode");
    let page = parse("# Notes\n\n## Notes\n\n## `code` *and* text\n\n[x](#notes-1)\n");
    assert_eq!(page.anchors, ["notes", "notes-1", "code-and-text"]);
    assert_eq!(page.links, [("#notes-1".to_string(), 7)]);
}

/// A directory under the system's temporary directory, removed when dropped (also when the
/// test fails).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn dead_files_and_anchors_are_reported_and_live_ones_are_not() {
    let tmp =
        TempDir(std::env::temp_dir().join(format!("tcp-reactor-doc-links-{}", std::process::id())));
    let _ = fs::remove_dir_all(&tmp.0);
    fs::create_dir_all(tmp.0.join("docs/sub")).expect("temporary docs/");
    let write = |path: &str, text: &str| fs::write(tmp.0.join(path), text).expect("a page");
    write(
        "README.md",
        "# Top\n\n[guide](docs/a.md#second-part) [gone](docs/gone.md) [top](#top)\n\
         [bad anchor](docs/a.md#nowhere) [site](https://example.com/x.md#y)\n\
         ![chart](docs/sub/chart.svg) [dir](docs/sub/#inside) [dir](docs/sub/)\n",
    );
    write(
        "docs/a.md",
        "# A\n\n## Second part\n\n[back](../README.md#top) [self](#a)\n",
    );
    write("docs/sub/README.md", "# Inside\n\n[up](../a.md#missing)\n");
    write("docs/sub/chart.svg", "<svg/>");
    let pages = pages(&tmp.0);
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(
        dead_links(&tmp.0, &pages),
        [
            "README.md:3: docs/gone.md: no such file or directory",
            "README.md:4: docs/a.md#nowhere: no heading #nowhere",
            "docs/sub/README.md:3: ../a.md#missing: no heading #missing",
        ]
    );
}
