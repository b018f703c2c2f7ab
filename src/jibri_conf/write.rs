//! `generate --write`: put the environments into an existing jibri.conf, keeping every other byte.
//!
//! With one `environments` definition (at any nesting: `jibri { api { xmpp { ... } } }`,
//! `jibri.api.xmpp.environments = ...`, or a mix), only its value is replaced. With none, the
//! field is inserted into the deepest existing `jibri` / `api` / `xmpp` object, creating the
//! missing nesting. With several, we refuse: which one to keep is the operator's call. The result
//! is re-parsed and must resolve to exactly the generated list, or nothing is written.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::check::ENVIRONMENTS_PATH;
use super::conf::{self, Conf, ConfNode};
use super::generate::{self, COMMENT, EnvOut};
use super::hocon::{self, Field, Item, Node, Object, Value, line_col};
use super::shards::Shards;
use super::{Error, NicknameChoice};

/// What was written, for the summary line.
#[derive(Debug)]
pub struct Written {
    /// The file replaced (symlinks resolved).
    pub path: PathBuf,
    /// The copy of the previous contents.
    pub backup: PathBuf,
    /// Whether the environments were inserted (`false`: replaced).
    pub inserted: bool,
    /// Problems that did not stop the write (e.g. ownership not kept).
    pub warnings: Vec<String>,
}

/// Replaces (or inserts) the environments of `path` with those of `shards`.
pub fn write_file(
    path: &Path,
    shards: &Shards,
    nickname: NicknameChoice,
) -> Result<Written, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    // Write next to the real file, not over a symlink.
    let real = fs::canonicalize(path).map_err(read_err)?;
    let meta = fs::metadata(&real).map_err(read_err)?;
    let bytes = fs::read(&real).map_err(read_err)?;
    let refuse = |reason: String| Error::Refused {
        path: path.to_owned(),
        reason,
    };
    let src =
        String::from_utf8(bytes).map_err(|_| refuse("the file is not UTF-8 text".to_owned()))?;
    let doc = hocon::parse(&src).map_err(|err| Error::Parse {
        path: path.to_owned(),
        err,
    })?;

    let nickname = match nickname {
        NicknameChoice::Given(n) => n,
        NicknameChoice::Fresh => generate::new_nickname(),
        NicknameChoice::Keep => existing_nickname(&conf::resolve(&doc).root)
            .map_err(refuse)?
            .unwrap_or_else(generate::new_nickname),
    };
    let envs = generate::prepare(shards, &nickname)?;
    let (new_text, inserted) = splice(&src, &doc, &envs).map_err(refuse)?;
    verify(&new_text, &envs).map_err(refuse)?;

    let backup = PathBuf::from(format!("{}.bak", real.display()));
    let write_err = |p: &Path| {
        let p = p.to_owned();
        move |source| Error::Write { path: p, source }
    };
    let mut warnings = write_atomic(&backup, src.as_bytes(), &meta).map_err(write_err(&backup))?;
    warnings.extend(write_atomic(&real, new_text.as_bytes(), &meta).map_err(write_err(&real))?);
    Ok(Written {
        path: real,
        backup,
        inserted,
        warnings,
    })
}

/// The one nickname the file's environments use, if any.
fn existing_nickname(root: &ConfNode) -> Result<Option<String>, String> {
    let mut found: Vec<String> = Vec::new();
    if let Some(Conf::Array(envs)) = root.get_path(&ENVIRONMENTS_PATH).map(|n| &n.value) {
        for env in envs {
            for muc in ["control-muc", "sip-control-muc"] {
                if let Some(n) = env.get_path(&[muc, "nickname"]).and_then(ConfNode::as_text)
                    && !n.is_empty()
                    && !found.contains(&n)
                {
                    found.push(n);
                }
            }
        }
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(format!(
            "--keep-nickname: the environments use {} different nicknames; pass --nickname",
            found.len()
        )),
    }
}

/// A field found on the way to `jibri.api.xmpp.environments`.
struct Found<'a> {
    targets: Vec<&'a Field>,
    /// Literal objects whose path is a prefix of the target: (depth, node).
    containers: Vec<(usize, &'a Node)>,
}

fn walk<'a>(object: &'a Object, prefix: &[String], found: &mut Found<'a>) {
    for item in &object.items {
        let Item::Field(field) = item else { continue };
        let mut path = prefix.to_vec();
        path.extend(field.path.iter().cloned());
        let is_prefix = path.len() <= ENVIRONMENTS_PATH.len()
            && path.iter().zip(ENVIRONMENTS_PATH).all(|(a, b)| a == b);
        if !is_prefix {
            continue;
        }
        if path.len() == ENVIRONMENTS_PATH.len() {
            found.targets.push(field);
        } else if let Value::Object(inner) = &field.value.value {
            found.containers.push((path.len(), &field.value));
            walk(inner, &path, found);
        }
    }
}

/// The leading whitespace of the line holding `offset`.
fn line_indent(src: &str, offset: usize) -> &str {
    let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = &src[start..];
    let end = line
        .find(|c: char| c != ' ' && c != '\t')
        .unwrap_or(line.len());
    &line[..end]
}

/// The file's indentation step: a tab, or its smallest space indent (2 if none).
fn indent_unit(src: &str) -> String {
    let mut smallest = usize::MAX;
    for line in src.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('\t') {
            return "\t".to_owned();
        }
        let n = line.len() - line.trim_start_matches(' ').len();
        if n > 0 {
            smallest = smallest.min(n);
        }
    }
    " ".repeat(if smallest <= 8 { smallest } else { 2 })
}

/// Returns the new text and whether the field was inserted.
fn splice(src: &str, doc: &hocon::Document, envs: &[EnvOut]) -> Result<(String, bool), String> {
    let Value::Object(root) = &doc.root.value else {
        return Err("the root is not an object".to_owned());
    };
    let mut found = Found {
        targets: Vec::new(),
        containers: Vec::new(),
    };
    walk(root, &[], &mut found);
    let unit = indent_unit(src);
    let dotted = ENVIRONMENTS_PATH.join(".");
    match found.targets.as_slice() {
        [target] => {
            if target.append {
                return Err(format!(
                    "{dotted} is built with `+=`; rewrite it as one list first"
                ));
            }
            let indent = line_indent(src, target.key_span.start);
            let array = generate::render_array(envs, indent, &unit);
            // `environments { ... }` has no separator; an array needs one.
            let between = &src[target.key_span.end..target.value.span.start];
            let start = if between.trim().is_empty() && !between.contains(['=', ':']) {
                target.key_span.end
            } else {
                target.value.span.start
            };
            let replacement = if start == target.key_span.end {
                format!(" = {array}")
            } else {
                array
            };
            let end = target.value.span.end;
            Ok((
                format!("{}{replacement}{}", &src[..start], &src[end..]),
                false,
            ))
        }
        [] => {
            // The deepest literal object on the path (the last one on a tie), else the root.
            let (depth, container) = found
                .containers
                .iter()
                .rev()
                .max_by_key(|(d, _)| *d)
                .map_or((0, &doc.root), |(d, n)| (*d, *n));
            Ok((insert(src, container, depth, envs, &unit), true))
        }
        many => {
            let lines: Vec<String> = many
                .iter()
                .map(|f| line_col(src, f.key_span.start).0.to_string())
                .collect();
            Err(format!(
                "{dotted} is defined {} times (lines {}); keep one and run again",
                many.len(),
                lines.join(", ")
            ))
        }
    }
}

/// Renders the missing nesting below depth `depth`, each line indented from `indent`.
fn nested_lines(depth: usize, envs: &[EnvOut], indent: &str, unit: &str) -> String {
    let mut out = String::new();
    let mut level = indent.to_owned();
    let opened = &ENVIRONMENTS_PATH[depth..ENVIRONMENTS_PATH.len() - 1];
    for key in opened {
        out.push_str(&format!("{level}{key} {{\n"));
        level.push_str(unit);
    }
    out.push_str(&format!("{level}{COMMENT}\n"));
    out.push_str(&format!(
        "{level}environments = {}\n",
        generate::render_array(envs, &level, unit)
    ));
    for _ in opened {
        level.truncate(level.len() - unit.len());
        out.push_str(&format!("{level}}}\n"));
    }
    out
}

fn insert(src: &str, container: &Node, depth: usize, envs: &[EnvOut], unit: &str) -> String {
    let braced = matches!(&container.value, Value::Object(o) if o.braced);
    if !braced {
        // The brace-less root: append at the end of the file.
        let mut out = src.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&nested_lines(depth, envs, "", unit));
        return out;
    }
    let close = container.span.end - 1; // the '}'
    let brace_indent = line_indent(src, close);
    let inner = format!("{brace_indent}{unit}");
    let line_start = src[..close].rfind('\n').map_or(0, |i| i + 1);
    if src[line_start..close].trim().is_empty() {
        // `}` alone on its line: insert whole lines before that line.
        let block = nested_lines(depth, envs, &inner, unit);
        format!("{}{block}{}", &src[..line_start], &src[line_start..])
    } else {
        // `xmpp { }` on one line: open it up.
        let block = nested_lines(depth, envs, &inner, unit);
        format!("{}\n{block}{brace_indent}{}", &src[..close], &src[close..])
    }
}

/// The written text must parse and resolve to exactly the generated environments.
fn verify(new_text: &str, envs: &[EnvOut]) -> Result<(), String> {
    let expected = hocon::parse(&generate::render_block(envs))
        .map(|d| conf::resolve(&d))
        .map_err(|e| format!("internal error: generated text does not parse: {e}"))?;
    let actual = hocon::parse(new_text)
        .map(|d| conf::resolve(&d))
        .map_err(|e| format!("internal error: the result would not parse: {e}"))?;
    let get = |r: &conf::Resolved| r.root.get_path(&ENVIRONMENTS_PATH).cloned();
    match (get(&expected), get(&actual)) {
        (Some(e), Some(a)) if e.same(&a) => Ok(()),
        _ => Err(format!(
            "after the edit, {} would not be the generated list (is it overridden or set by a substitution later in the file?)",
            ENVIRONMENTS_PATH.join(".")
        )),
    }
}

/// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename, fsync
/// of the directory. Permissions (and, when allowed, owner) are copied from `like`.
fn write_atomic(path: &Path, data: &[u8], like: &fs::Metadata) -> io::Result<Vec<String>> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?
        .to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut warnings = Vec::new();
    let result = (|| -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            // Private until the final permissions are set: the file holds passwords.
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if let Err(e) = std::os::unix::fs::fchown(&file, Some(like.uid()), Some(like.gid())) {
                warnings.push(format!(
                    "{}: could not keep owner {}:{}: {e}",
                    path.display(),
                    like.uid(),
                    like.gid()
                ));
            }
        }
        file.set_permissions(like.permissions())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        // Best effort: the temp file is ours and useless now.
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| warnings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::super::shards;
    use super::*;

    fn envs(n: usize) -> Vec<EnvOut> {
        let mut text = String::from(
            "[common]\nxmpp-domain = \"meet.example.com\"\nstrip-from-room-domain = \"conference.\"\nusage-timeout = 0\ntrust-all-xmpp-certs = true\n[common.control-muc]\ndomain = \"internal.auth.meet.example.com\"\nroom-name = \"JibriBrewery\"\n[common.control-login]\ndomain = \"auth.meet.example.com\"\nusername = \"jibri\"\npassword = \"test-only\"\n[common.call-login]\ndomain = \"recorder.meet.example.com\"\nusername = \"recorder\"\npassword = \"test-only\"\n",
        );
        for i in 1..=n {
            text.push_str(&format!(
                "[[shard]]\nname = \"s{i}\"\nxmpp-server-hosts = [\"10.0.0.{i}\"]\n"
            ));
        }
        let s = shards::parse(&text, Path::new(".")).unwrap();
        generate::prepare(&s, "nick").unwrap()
    }

    fn spliced(src: &str) -> Result<(String, bool), String> {
        let doc = hocon::parse(src).unwrap();
        let envs = envs(2);
        let out = splice(src, &doc, &envs)?;
        verify(&out.0, &envs)?;
        Ok(out)
    }

    #[test]
    fn replaces_only_the_array() {
        let src = "# head\njibri {\n  api {\n    xmpp {\n      environments = [ { name = old } ] // tail\n    }\n  }\n}\n";
        let (out, inserted) = spliced(src).unwrap();
        assert!(!inserted);
        let head = "# head\njibri {\n  api {\n    xmpp {\n      environments = ";
        assert!(out.starts_with(head));
        assert!(out.ends_with("] // tail\n    }\n  }\n}\n"));
        assert!(out.contains("\n          name = \"s1\"\n"), "{out}");
    }

    #[test]
    fn object_shorthand_gets_a_separator() {
        let (out, _) = spliced("jibri.api.xmpp.environments { }\n").unwrap();
        assert!(
            out.starts_with("jibri.api.xmpp.environments = [\n"),
            "{out}"
        );
    }

    #[test]
    fn inserts_into_the_deepest_object() {
        let src = "jibri {\n  // keep\n  api {\n    http { port = 2222 }\n  }\n}\n";
        let (out, inserted) = spliced(src).unwrap();
        assert!(inserted);
        assert!(
            out.starts_with("jibri {\n  // keep\n  api {\n    http { port = 2222 }\n    xmpp {\n"),
            "{out}"
        );
        assert!(out.ends_with("    }\n  }\n}\n"), "{out}");

        let (out, _) = spliced("jibri { api { xmpp { } } }").unwrap();
        assert!(
            out.starts_with("jibri { api { xmpp { \n  // One environment"),
            "{out}"
        );
        assert!(out.ends_with("\n  ]\n} } }"), "{out}");

        let (out, _) = spliced("# only a comment").unwrap();
        assert!(
            out.starts_with("# only a comment\njibri {\n  api {\n"),
            "{out}"
        );
        let (out, _) = spliced("{\n  a = 1\n}\n").unwrap();
        assert!(out.starts_with("{\n  a = 1\n  jibri {\n"), "{out}");
    }

    #[test]
    fn refuses_ambiguous_or_overridden() {
        let e = spliced("jibri.api.xmpp.environments = []\njibri { api.xmpp.environments = [] }\n")
            .unwrap_err();
        assert!(e.contains("defined 2 times (lines 1, 2)"), "{e}");
        let e = spliced("jibri.api.xmpp { }\njibri.api = null\n").unwrap_err();
        assert!(e.contains("would not be the generated list"), "{e}");
        let e = spliced("jibri.api.xmpp.environments += {}\n").unwrap_err();
        assert!(e.contains("+="), "{e}");
    }

    #[test]
    fn indent_detection() {
        assert_eq!(indent_unit("a {\n    b = 1\n}\n"), "    ");
        assert_eq!(indent_unit("a {\n\tb = 1\n}\n"), "\t");
        assert_eq!(indent_unit("a = 1\n"), "  ");
    }
}
