//! Merging and substitution: turns a [`hocon::Document`] into the value tree Jibri would see.
//!
//! Repeated keys merge when both values are objects, otherwise the later one wins; dotted keys
//! are nested objects; `+=` appends; `${path}` is looked up from the root. What cannot be
//! settled (an undefined substitution, a cycle, an include) becomes an [`Issue`] so `check`
//! can report it with its position instead of failing outright.
//!
//! Simplifications (none occur in a jibri.conf): an object merged onto a substitution replaces it
//! rather than merging late, and a self-referential `a = ${a} ...` is reported as a cycle.

use super::hocon::{Document, Item, Node, Object, Piece, Scalar, Span, Value};

/// A resolved value with the span of the text it came from.
#[derive(Debug, Clone)]
pub struct ConfNode {
    /// The value.
    pub value: Conf,
    /// Where it is written (for a substitution: where the `${...}` is).
    pub span: Span,
}

/// A resolved value.
#[derive(Debug, Clone)]
pub enum Conf {
    /// Fields in first-definition order, keys unique.
    Object(Vec<(String, ConfNode)>),
    /// Elements.
    Array(Vec<ConfNode>),
    /// A string.
    Str(String),
    /// A number as written.
    Num(String),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
}

impl ConfNode {
    /// The field `key` of an object.
    pub fn get(&self, key: &str) -> Option<&ConfNode> {
        match &self.value {
            Conf::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at a path of object keys.
    pub fn get_path(&self, path: &[&str]) -> Option<&ConfNode> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The text of a string or number (numbers and booleans read as strings, as Jibri would).
    pub fn as_text(&self) -> Option<String> {
        match &self.value {
            Conf::Str(s) | Conf::Num(s) => Some(s.clone()),
            Conf::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Whether two values are equal, ignoring where they are written.
    pub fn same(&self, other: &ConfNode) -> bool {
        match (&self.value, &other.value) {
            (Conf::Object(a), Conf::Object(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(k, v)| {
                        b.iter()
                            .find(|(k2, _)| k2 == k)
                            .is_some_and(|(_, v2)| v.same(v2))
                    })
            }
            (Conf::Array(a), Conf::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Conf::Str(a), Conf::Str(b)) | (Conf::Num(a), Conf::Num(b)) => a == b,
            (Conf::Bool(a), Conf::Bool(b)) => a == b,
            (Conf::Null, Conf::Null) => true,
            _ => false,
        }
    }
}

/// Something the resolver could not settle.
#[derive(Debug, Clone, PartialEq)]
pub enum IssueKind {
    /// `${path}` names nothing in the file.
    Unresolved(String),
    /// `${path}` depends on itself.
    Cycle(String),
    /// A concatenation mixes objects, arrays and strings.
    BadConcat,
    /// An `include` statement (not followed).
    Include(String),
}

/// An [`IssueKind`] at a position.
#[derive(Debug, Clone)]
pub struct Issue {
    /// What.
    pub kind: IssueKind,
    /// Where.
    pub span: Span,
}

/// The resolved tree and whatever could not be resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The root object.
    pub root: ConfNode,
    /// Problems, in the order met.
    pub issues: Vec<Issue>,
}

/// Merges and resolves a document.
pub fn resolve(doc: &Document) -> Resolved {
    let mut issues = Vec::new();
    let merged = merge_node(&doc.root, &mut issues);
    let mut resolver = Resolver {
        root: &merged,
        issues,
        stack: Vec::new(),
    };
    let root = resolver.resolve(&merged).unwrap_or(ConfNode {
        value: Conf::Object(Vec::new()),
        span: doc.root.span,
    });
    Resolved {
        root,
        issues: resolver.issues,
    }
}

/// The merged tree: keys unique, substitutions not yet looked up.
#[derive(Debug, Clone)]
struct MNode {
    v: MVal,
    span: Span,
}

#[derive(Debug, Clone)]
enum MVal {
    Object(Vec<(String, MNode)>),
    Array(Vec<MNode>),
    Scalar(Scalar),
    Subst { path: Vec<String>, optional: bool },
    Concat(Vec<MPiece>),
}

#[derive(Debug, Clone)]
enum MPiece {
    Node(MNode),
    Space(String),
}

fn merge_node(node: &Node, issues: &mut Vec<Issue>) -> MNode {
    let v = match &node.value {
        Value::Object(o) => MVal::Object(merge_object(o, issues)),
        Value::Array(a) => MVal::Array(a.iter().map(|n| merge_node(n, issues)).collect()),
        Value::Scalar(s) => MVal::Scalar(s.clone()),
        Value::Subst { path, optional } => MVal::Subst {
            path: path.clone(),
            optional: *optional,
        },
        Value::Concat(pieces) => MVal::Concat(
            pieces
                .iter()
                .map(|p| match p {
                    Piece::Node(n) => MPiece::Node(merge_node(n, issues)),
                    Piece::Space(s) => MPiece::Space(s.clone()),
                })
                .collect(),
        ),
    };
    MNode { v, span: node.span }
}

fn merge_object(object: &Object, issues: &mut Vec<Issue>) -> Vec<(String, MNode)> {
    let mut fields = Vec::new();
    for item in &object.items {
        match item {
            Item::Include(inc) => issues.push(Issue {
                kind: IssueKind::Include(inc.target.clone()),
                span: inc.span,
            }),
            Item::Field(f) => {
                let value = merge_node(&f.value, issues);
                insert_path(&mut fields, &f.path, value, f.append);
            }
        }
    }
    fields
}

fn find<'a>(fields: &'a mut [(String, MNode)], key: &str) -> Option<&'a mut MNode> {
    fields.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn insert_path(fields: &mut Vec<(String, MNode)>, path: &[String], value: MNode, append: bool) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if !rest.is_empty() {
        let span = value.span;
        if find(fields, first).is_none() {
            fields.push((
                first.clone(),
                MNode {
                    v: MVal::Object(Vec::new()),
                    span,
                },
            ));
        }
        if let Some(existing) = find(fields, first) {
            if !matches!(existing.v, MVal::Object(_)) {
                // `a = 1` then `a.b = 2`: the object replaces the earlier value.
                *existing = MNode {
                    v: MVal::Object(Vec::new()),
                    span,
                };
            }
            if let MVal::Object(inner) = &mut existing.v {
                insert_path(inner, rest, value, append);
            }
        }
        return;
    }
    match find(fields, first) {
        None if append => {
            let span = value.span;
            fields.push((
                first.clone(),
                MNode {
                    v: MVal::Array(vec![value]),
                    span,
                },
            ));
        }
        None => fields.push((first.clone(), value)),
        Some(existing) if append => {
            if let MVal::Array(elements) = &mut existing.v {
                elements.push(value);
            } else {
                // Resolved later: concatenating with a non-array is then reported.
                let span = value.span;
                let old = existing.clone();
                *existing = MNode {
                    v: MVal::Concat(vec![
                        MPiece::Node(old),
                        MPiece::Node(MNode {
                            v: MVal::Array(vec![value]),
                            span,
                        }),
                    ]),
                    span,
                };
            }
        }
        Some(existing) => merge_into(existing, value),
    }
}

fn merge_into(old: &mut MNode, new: MNode) {
    match (&mut old.v, new.v) {
        (MVal::Object(old_fields), MVal::Object(new_fields)) => {
            for (k, v) in new_fields {
                match find(old_fields, &k) {
                    Some(existing) => merge_into(existing, v),
                    None => old_fields.push((k, v)),
                }
            }
        }
        (_, v) => {
            *old = MNode { v, span: new.span };
        }
    }
}

fn merge_conf(old: &mut ConfNode, new: ConfNode) {
    match (&mut old.value, new.value) {
        (Conf::Object(old_fields), Conf::Object(new_fields)) => {
            for (k, v) in new_fields {
                match old_fields.iter_mut().find(|(k2, _)| *k2 == k) {
                    Some((_, existing)) => merge_conf(existing, v),
                    None => old_fields.push((k, v)),
                }
            }
        }
        (_, value) => {
            *old = ConfNode {
                value,
                span: new.span,
            };
        }
    }
}

struct Resolver<'a> {
    root: &'a MNode,
    issues: Vec<Issue>,
    /// Paths being resolved, to detect cycles.
    stack: Vec<Vec<String>>,
}

impl Resolver<'_> {
    fn resolve(&mut self, node: &MNode) -> Option<ConfNode> {
        let value = match &node.v {
            MVal::Object(fields) => Conf::Object(
                fields
                    .iter()
                    .filter_map(|(k, v)| self.resolve(v).map(|r| (k.clone(), r)))
                    .collect(),
            ),
            MVal::Array(elements) => {
                Conf::Array(elements.iter().filter_map(|e| self.resolve(e)).collect())
            }
            MVal::Scalar(s) => match s {
                Scalar::Str(s) => Conf::Str(s.clone()),
                Scalar::Num(n) => Conf::Num(n.clone()),
                Scalar::Bool(b) => Conf::Bool(*b),
                Scalar::Null => Conf::Null,
            },
            MVal::Subst { path, optional } => {
                return self.lookup(path, *optional, node.span).map(|r| ConfNode {
                    value: r.value,
                    span: node.span,
                });
            }
            MVal::Concat(pieces) => return self.concat(pieces, node.span),
        };
        Some(ConfNode {
            value,
            span: node.span,
        })
    }

    fn concat(&mut self, pieces: &[MPiece], span: Span) -> Option<ConfNode> {
        // Spaces count only between two values; an undefined `${?x}` contributes nothing.
        let mut values: Vec<ConfNode> = Vec::new();
        let mut text = String::new();
        let mut pending_space = String::new();
        for p in pieces {
            match p {
                MPiece::Space(s) => pending_space.push_str(s),
                MPiece::Node(n) => {
                    let Some(r) = self.resolve(n) else { continue };
                    if !values.is_empty() {
                        text.push_str(&pending_space);
                    }
                    pending_space.clear();
                    text.push_str(&scalar_text(&r.value));
                    values.push(r);
                }
            }
        }
        let all_objects = values.iter().all(|v| matches!(v.value, Conf::Object(_)));
        let all_arrays = values.iter().all(|v| matches!(v.value, Conf::Array(_)));
        let all_scalars = values
            .iter()
            .all(|v| !matches!(v.value, Conf::Object(_) | Conf::Array(_)));
        let value = match values.len() {
            0 => return None,
            1 => values.pop()?.value,
            _ if all_objects => {
                let mut iter = values.into_iter();
                let mut acc = iter.next()?;
                for v in iter {
                    merge_conf(&mut acc, v);
                }
                acc.value
            }
            _ if all_arrays => Conf::Array(
                values
                    .into_iter()
                    .flat_map(|v| match v.value {
                        Conf::Array(a) => a,
                        _ => Vec::new(),
                    })
                    .collect(),
            ),
            _ if all_scalars => Conf::Str(text),
            _ => {
                self.issues.push(Issue {
                    kind: IssueKind::BadConcat,
                    span,
                });
                return None;
            }
        };
        Some(ConfNode { value, span })
    }

    fn lookup(&mut self, path: &[String], optional: bool, span: Span) -> Option<ConfNode> {
        let joined = path.join(".");
        if self.stack.iter().any(|p| p == path) {
            self.issues.push(Issue {
                kind: IssueKind::Cycle(joined),
                span,
            });
            return None;
        }
        self.stack.push(path.to_vec());
        let found = self.walk(path);
        self.stack.pop();
        if found.is_none() && !optional {
            self.issues.push(Issue {
                kind: IssueKind::Unresolved(joined),
                span,
            });
        }
        found
    }

    /// Follows `path` through the merged tree, resolving only what lies on the way.
    fn walk(&mut self, path: &[String]) -> Option<ConfNode> {
        let mut node: &MNode = self.root;
        for (i, key) in path.iter().enumerate() {
            match &node.v {
                MVal::Object(fields) => {
                    node = fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)?;
                }
                MVal::Subst { .. } | MVal::Concat(_) => {
                    let resolved = self.resolve(node)?;
                    let rest: Vec<&str> = path[i..].iter().map(String::as_str).collect();
                    return resolved.get_path(&rest).cloned();
                }
                _ => return None,
            }
        }
        self.resolve(node)
    }
}

/// The text a scalar contributes to a string concatenation.
fn scalar_text(value: &Conf) -> String {
    match value {
        Conf::Str(s) | Conf::Num(s) => s.clone(),
        Conf::Bool(b) => b.to_string(),
        _ => "null".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::super::hocon::parse;
    use super::*;

    fn resolved(src: &str) -> Resolved {
        resolve(&parse(src).unwrap())
    }

    fn text(r: &Resolved, path: &[&str]) -> Option<String> {
        r.root.get_path(path).and_then(ConfNode::as_text)
    }

    #[test]
    fn repeated_keys_merge_objects_and_override_scalars() {
        let r = resolved("a { x = 1, y = 2 }\na { y = 3 }\na.z = 4\nb = 1\nb = 2\n");
        assert_eq!(text(&r, &["a", "x"]).as_deref(), Some("1"));
        assert_eq!(text(&r, &["a", "y"]).as_deref(), Some("3"));
        assert_eq!(text(&r, &["a", "z"]).as_deref(), Some("4"));
        assert_eq!(text(&r, &["b"]).as_deref(), Some("2"));
        let r = resolved("a { x = 1 }\na = 5\na { y = 2 }\n");
        assert!(r.root.get_path(&["a", "x"]).is_none());
        assert_eq!(text(&r, &["a", "y"]).as_deref(), Some("2"));
    }

    #[test]
    fn substitutions_and_concatenation() {
        let r = resolved(
            "d = example.com\nx { h = ${d}, n = \"a\"${d} b }\nt = 2 hours\nl = [1] [2]\nm = {a=1} {b=2}\nc = ${?nope}\n",
        );
        assert!(r.issues.is_empty(), "{:?}", r.issues);
        assert_eq!(text(&r, &["x", "h"]).as_deref(), Some("example.com"));
        assert_eq!(text(&r, &["x", "n"]).as_deref(), Some("aexample.com b"));
        assert_eq!(text(&r, &["t"]).as_deref(), Some("2 hours"));
        assert!(matches!(&r.root.get("l").unwrap().value, Conf::Array(a) if a.len() == 2));
        assert!(r.root.get_path(&["m", "b"]).is_some());
        assert!(r.root.get("c").is_none());
    }

    #[test]
    fn forward_reference_inside_same_object_is_not_a_cycle() {
        let r = resolved("j { a = ${j.b}, b = 1 }\n");
        assert!(r.issues.is_empty(), "{:?}", r.issues);
        assert_eq!(text(&r, &["j", "a"]).as_deref(), Some("1"));
    }

    #[test]
    fn unresolved_cycles_includes_and_appends() {
        let r = resolved(
            "include \"x.conf\"\na = ${b}\nc = ${d}\nd = ${c}\ne += 1\ne += 2\nf = [1] x\n",
        );
        let kinds: Vec<_> = r.issues.iter().map(|i| i.kind.clone()).collect();
        assert!(kinds.contains(&IssueKind::Include("\"x.conf\"".into())));
        assert!(kinds.contains(&IssueKind::Unresolved("b".into())));
        assert!(kinds.iter().any(|k| matches!(k, IssueKind::Cycle(_))));
        assert!(kinds.contains(&IssueKind::BadConcat));
        assert!(matches!(&r.root.get("e").unwrap().value, Conf::Array(a) if a.len() == 2));
    }
}
