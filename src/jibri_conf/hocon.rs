//! A HOCON parser for the subset a jibri.conf uses.
//!
//! Our own rather than a crate because `check` needs line/column positions for findings and
//! errors, and `generate --write` needs the byte span of the `environments` value to splice the
//! file while keeping every other byte (comments included). The parser keeps the syntax tree
//! with spans; [`super::conf`] merges and resolves it.
//!
//! Supported: `#` and `//` comments, optional root braces, `=` / `:` / `+=` and the object
//! shorthand `a { }`, dotted and quoted keys, quoted, triple-quoted and unquoted strings, numbers,
//! booleans, null, arrays and objects across lines with newline or comma separators (one
//! trailing comma allowed), value concatenation on one line (`2 hours`), substitutions
//! `${a.b}` / `${?a.b}` and `include` statements (recorded, not followed).

use std::fmt;

/// A byte range `start..end` in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// A syntax error at a 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte offset in the source.
    pub offset: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Converts a byte offset into a 1-based (line, column), the column counted in characters.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, src[line_start..offset].chars().count() + 1)
}

/// A parsed document: its root object (the braces around it are optional in HOCON).
#[derive(Debug, Clone)]
pub struct Document {
    /// The root; its value is always [`Value::Object`].
    pub root: Node,
}

/// A value with its span in the source.
#[derive(Debug, Clone)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it is written.
    pub span: Span,
}

/// A value as written, before merging and substitution.
#[derive(Debug, Clone)]
pub enum Value {
    /// `{ ... }` (or the brace-less root).
    Object(Object),
    /// `[ ... ]`.
    Array(Vec<Node>),
    /// A string, number, boolean or null.
    Scalar(Scalar),
    /// `${path}` or, when optional, `${?path}`.
    Subst {
        /// The absolute path it names.
        path: Vec<String>,
        /// `${?...}`: undefined is allowed.
        optional: bool,
    },
    /// Several values on one line, e.g. `2 hours` or `${a} ${b}`.
    Concat(Vec<Piece>),
}

/// One part of a concatenation.
#[derive(Debug, Clone)]
pub enum Piece {
    /// A value.
    Node(Node),
    /// Whitespace between two values (kept when the result is a string).
    Space(String),
}

/// A leaf value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A quoted or unquoted string.
    Str(String),
    /// A number, kept as written.
    Num(String),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// An object's items in source order (repeated keys are merged later).
#[derive(Debug, Clone)]
pub struct Object {
    /// Fields and includes.
    pub items: Vec<Item>,
    /// Whether written with braces (only the root may lack them).
    pub braced: bool,
}

/// One entry of an object.
#[derive(Debug, Clone)]
pub enum Item {
    /// `key = value`, `key : value`, `key += value` or `key { ... }`.
    Field(Field),
    /// `include ...`.
    Include(Include),
}

/// A field as written.
#[derive(Debug, Clone)]
pub struct Field {
    /// The key path: `a.b.c` gives three elements.
    pub path: Vec<String>,
    /// Where the key is written.
    pub key_span: Span,
    /// `+=`: append to an array.
    pub append: bool,
    /// The value.
    pub value: Node,
}

/// An `include` statement (not followed: reported by `check`).
#[derive(Debug, Clone)]
pub struct Include {
    /// What follows `include`, as written (`"file.conf"` or `required(file("x"))`).
    pub target: String,
    /// The whole statement.
    pub span: Span,
}

/// Parses a HOCON document.
pub fn parse(src: &str) -> Result<Document, ParseError> {
    let mut p = Parser { src, pos: 0 };
    if p.rest().starts_with('\u{feff}') {
        p.pos += '\u{feff}'.len_utf8();
    }
    p.skip_all();
    let root = if p.peek() == Some('{') {
        let node = p.parse_braced_object()?;
        p.skip_all();
        if let Some(c) = p.peek() {
            return Err(p.err(format!("unexpected {} after the root object", describe(c))));
        }
        node
    } else if p.peek() == Some('[') {
        return Err(p.err("the root must be an object, not an array"));
    } else {
        let start = p.pos;
        let object = p.parse_object_body(false, start)?;
        Node {
            value: Value::Object(object),
            span: Span::new(0, src.len()),
        }
    };
    Ok(Document { root })
}

/// Characters that cannot appear in an unquoted string (HOCON spec), besides whitespace.
const FORBIDDEN: &str = "$\"{}[]:=,+#`^?!@*&\\";

fn is_unquoted(c: char) -> bool {
    !c.is_whitespace() && c != '\u{feff}' && !FORBIDDEN.contains(c)
}

fn is_inline_ws(c: char) -> bool {
    c != '\n' && (c.is_whitespace() || c == '\u{feff}')
}

fn describe(c: char) -> String {
    match c {
        '\n' => "end of line".to_owned(),
        c => format!("'{c}'"),
    }
}

/// Whether an unquoted token is a JSON-style number (not `inf`, `1.2.3` or `10.0.0.1`).
fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// How a sequence (object body or array) reads: its closing character (none: the end of the
/// file closes the root object) and its error messages.
struct Seq {
    close: Option<char>,
    what: &'static str,
    /// A ',' where an item should start.
    expected: &'static str,
    /// A second ',' right after one.
    double_comma: &'static str,
    /// Where a separator was missing.
    between: &'static str,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        let (line, column) = line_col(self.src, offset);
        ParseError {
            message: message.into(),
            line,
            column,
            offset,
        }
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        self.err_at(self.pos, message)
    }

    /// The end of the file came before the `close` of the `what` opened at `open`.
    fn unclosed(&self, what: &str, open: usize, close: char) -> ParseError {
        let (line, column) = line_col(self.src, open);
        self.err(format!(
            "end of file inside the {what} opened at line {line}, column {column}: missing '{close}'"
        ))
    }

    fn at_comment(&self) -> bool {
        let r = self.rest();
        r.starts_with('#') || r.starts_with("//")
    }

    fn skip_inline_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !is_inline_ws(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    /// Skips whitespace and comments up to (not including) the next newline.
    fn skip_inline(&mut self) {
        self.skip_inline_ws();
        if self.at_comment() {
            match self.rest().find('\n') {
                Some(i) => self.pos += i,
                None => self.pos = self.src.len(),
            }
        }
    }

    /// Skips whitespace, comments and newlines.
    fn skip_all(&mut self) {
        loop {
            self.skip_inline();
            if self.peek() == Some('\n') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn parse_braced_object(&mut self) -> Result<Node, ParseError> {
        let start = self.pos;
        self.bump(); // '{'
        let object = self.parse_object_body(true, start)?;
        Ok(Node {
            value: Value::Object(object),
            span: Span::new(start, self.pos),
        })
    }

    /// Parses object items up to the closing brace (consumed) or, for the root, the end.
    fn parse_object_body(&mut self, braced: bool, open: usize) -> Result<Object, ParseError> {
        let seq = Seq {
            close: braced.then_some('}'),
            what: "object",
            expected: "unexpected ',' (expected a key)",
            double_comma: "unexpected ',' (two commas in a row)",
            between: "after the value",
        };
        let items = self.sequence(open, &seq, Self::parse_item)?;
        Ok(Object { items, braced })
    }

    /// Items separated by ',' or new lines up to `seq.close` (consumed) or, without one, the
    /// end of the file.
    fn sequence<T>(
        &mut self,
        open: usize,
        seq: &Seq,
        mut parse: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_all();
            match self.peek() {
                None => match seq.close {
                    Some(close) => return Err(self.unclosed(seq.what, open, close)),
                    None => break,
                },
                Some(c) if Some(c) == seq.close => {
                    self.pos += 1;
                    break;
                }
                Some(',') => return Err(self.err(seq.expected)),
                Some(_) => {
                    out.push(parse(self)?);
                    self.skip_inline();
                    match self.peek() {
                        Some(',') => {
                            self.pos += 1;
                            self.skip_all();
                            if self.peek() == Some(',') {
                                return Err(self.err(seq.double_comma));
                            }
                        }
                        Some('\n') | None => {}
                        Some(c) if Some(c) == seq.close => {}
                        Some(c) => {
                            return Err(self.err(format!(
                                "expected ',' or a new line {}, found {}",
                                seq.between,
                                describe(c)
                            )));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn parse_item(&mut self) -> Result<Item, ParseError> {
        let start = self.pos;
        if let Some(include) = self.try_include()? {
            return Ok(Item::Include(include));
        }
        let (path, key_span) = self.parse_path("a key")?;
        self.skip_inline();
        // Like Typesafe config, allow new lines and comments before the separator; if none
        // follows, report the error where the key's line ends.
        let after_key = self.pos;
        self.skip_all();
        if !matches!(self.peek(), Some('=' | ':' | '{')) && !self.rest().starts_with("+=") {
            self.pos = after_key;
        }
        let mut append = false;
        match self.peek() {
            Some('=') | Some(':') => {
                self.pos += 1;
                self.skip_all();
            }
            Some('+') if self.rest().starts_with("+=") => {
                self.pos += 2;
                append = true;
                self.skip_all();
            }
            Some('{') => {}
            Some(c) => {
                return Err(self.err(format!(
                    "expected '=', ':' or '{{' after the key '{}', found {}",
                    path.join("."),
                    describe(c)
                )));
            }
            None => {
                return Err(
                    self.err_at(start, format!("the key '{}' has no value", path.join(".")))
                );
            }
        }
        let value = self.parse_value()?;
        Ok(Item::Field(Field {
            path,
            key_span,
            append,
            value,
        }))
    }

    /// Recognises `include "x"` / `include required(...)` etc.; anything else is a key.
    fn try_include(&mut self) -> Result<Option<Include>, ParseError> {
        let start = self.pos;
        let Some(after) = self.rest().strip_prefix("include") else {
            return Ok(None);
        };
        if !after.starts_with(is_inline_ws) {
            return Ok(None);
        }
        self.pos += "include".len();
        self.skip_inline_ws();
        let target_start = self.pos;
        if self.peek() == Some('"') {
            self.parse_quoted()?;
        } else if ["required(", "file(", "url(", "classpath("]
            .iter()
            .any(|k| self.rest().starts_with(k))
        {
            let mut depth = 0usize;
            loop {
                match self.peek() {
                    Some('(') => {
                        depth += 1;
                        self.pos += 1;
                    }
                    Some(')') => {
                        depth -= 1;
                        self.pos += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Some('"') => {
                        self.parse_quoted()?;
                    }
                    Some('\n') | None => {
                        return Err(self.err("unterminated include: missing ')'"));
                    }
                    Some(_) => {
                        self.bump();
                    }
                }
            }
        } else {
            self.pos = start;
            return Ok(None);
        }
        Ok(Some(Include {
            target: self.src[target_start..self.pos].to_owned(),
            span: Span::new(start, self.pos),
        }))
    }

    /// Parses a path expression (`a.b."c.d"`), for keys and substitutions.
    fn parse_path(&mut self, what: &str) -> Result<(Vec<String>, Span), ParseError> {
        let start = self.pos;
        let mut elements = Vec::new();
        let mut current = String::new();
        let mut has_piece = false;
        let mut pending_ws = String::new();
        let mut end = self.pos;
        loop {
            match self.peek() {
                Some('"') => {
                    if has_piece {
                        current.push_str(&pending_ws);
                    }
                    pending_ws.clear();
                    current.push_str(&self.parse_quoted()?);
                    has_piece = true;
                    end = self.pos;
                }
                Some('.') => {
                    if !has_piece {
                        return Err(self.err(format!(
                            "empty element in {what} (two dots, or a leading dot)"
                        )));
                    }
                    elements.push(std::mem::take(&mut current));
                    has_piece = false;
                    pending_ws.clear();
                    self.pos += 1;
                    end = self.pos;
                }
                Some(c) if is_inline_ws(c) => {
                    pending_ws.push(c);
                    self.pos += c.len_utf8();
                }
                Some(c) if is_unquoted(c) && !self.rest().starts_with("//") => {
                    if has_piece {
                        current.push_str(&pending_ws);
                    }
                    pending_ws.clear();
                    while let Some(c) = self.peek() {
                        if !is_unquoted(c) || c == '.' || self.rest().starts_with("//") {
                            break;
                        }
                        current.push(c);
                        self.pos += c.len_utf8();
                    }
                    has_piece = true;
                    end = self.pos;
                }
                _ => break,
            }
        }
        // Trailing whitespace is not part of the path.
        self.pos = end;
        if !has_piece {
            return Err(if elements.is_empty() {
                match self.peek() {
                    Some(c) => self.err(format!("expected {what}, found {}", describe(c))),
                    None => self.err(format!("expected {what}, found end of file")),
                }
            } else {
                self.err(format!("{what} ends with '.'"))
            });
        }
        elements.push(current);
        Ok((elements, Span::new(start, end)))
    }

    /// Parses a value and any concatenation that follows it on the same line.
    fn parse_value(&mut self) -> Result<Node, ParseError> {
        let start = self.pos;
        let mut pieces: Vec<Piece> = Vec::new();
        while let Some(c) = self.peek() {
            if matches!(c, '\n' | ',' | '}' | ']') || self.at_comment() {
                break;
            }
            if is_inline_ws(c) {
                let ws_start = self.pos;
                self.skip_inline_ws();
                pieces.push(Piece::Space(self.src[ws_start..self.pos].to_owned()));
                continue;
            }
            let piece_start = self.pos;
            let value = match c {
                '"' => Value::Scalar(Scalar::Str(self.parse_quoted()?)),
                '{' => self.parse_braced_object()?.value,
                '[' => self.parse_array()?,
                '$' if self.rest().starts_with("${") => self.parse_subst()?,
                c if is_unquoted(c) => {
                    let mut text = String::new();
                    while let Some(c) = self.peek() {
                        if !is_unquoted(c) || self.rest().starts_with("//") {
                            break;
                        }
                        text.push(c);
                        self.pos += c.len_utf8();
                    }
                    Value::Scalar(match text.as_str() {
                        "true" => Scalar::Bool(true),
                        "false" => Scalar::Bool(false),
                        "null" => Scalar::Null,
                        t if is_number(t) => Scalar::Num(text),
                        _ => Scalar::Str(text),
                    })
                }
                c => {
                    return Err(self.err(format!(
                        "unexpected {} in a value (quote the string if it contains it)",
                        describe(c)
                    )));
                }
            };
            pieces.push(Piece::Node(Node {
                value,
                span: Span::new(piece_start, self.pos),
            }));
        }
        while matches!(pieces.last(), Some(Piece::Space(_))) {
            pieces.pop();
        }
        let end = match pieces.last() {
            Some(Piece::Node(n)) => n.span.end,
            _ => {
                return Err(match self.peek() {
                    Some(c) => self.err(format!("expected a value, found {}", describe(c))),
                    None => self.err("expected a value, found end of file"),
                });
            }
        };
        // Leave the position right after the value so trailing spaces stay outside its span.
        self.pos = end;
        if pieces.len() == 1
            && let Some(Piece::Node(node)) = pieces.pop()
        {
            return Ok(node);
        }
        Ok(Node {
            value: Value::Concat(pieces),
            span: Span::new(start, end),
        })
    }

    fn parse_array(&mut self) -> Result<Value, ParseError> {
        let open = self.pos;
        self.pos += 1; // '['
        let seq = Seq {
            close: Some(']'),
            what: "array",
            expected: "unexpected ',' (expected a value)",
            double_comma: "unexpected ',' (expected a value)",
            between: "between array elements",
        };
        let elements = self.sequence(open, &seq, Self::parse_value)?;
        Ok(Value::Array(elements))
    }

    fn parse_subst(&mut self) -> Result<Value, ParseError> {
        self.pos += 2; // "${"
        let optional = if self.peek() == Some('?') {
            self.pos += 1;
            true
        } else {
            false
        };
        self.skip_inline_ws();
        let (path, _) = self.parse_path("a path in the substitution")?;
        self.skip_inline_ws();
        if self.peek() != Some('}') {
            return Err(self.err("expected '}' to close the substitution"));
        }
        self.pos += 1;
        Ok(Value::Subst { path, optional })
    }

    /// Parses `"..."` (JSON escapes) or `"""..."""` (raw, may span lines).
    fn parse_quoted(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        if self.rest().starts_with("\"\"\"") {
            let body = open + 3;
            let Some(close) = self.src[body..].find("\"\"\"") else {
                return Err(self.err_at(open, "unterminated triple-quoted string"));
            };
            // Extra quotes just before the closing three belong to the string.
            let mut end = body + close + 3;
            while self.src[end..].starts_with('"') {
                end += 1;
            }
            self.pos = end;
            return Ok(self.src[body..end - 3].to_owned());
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let here = self.pos;
            match self.bump() {
                None => return Err(self.err_at(open, "unterminated string: missing '\"'")),
                Some('\n') => {
                    return Err(self.err_at(
                        here,
                        "new line inside a quoted string (write \\n, or use a \"\"\"triple-quoted\"\"\" string)",
                    ));
                }
                Some('"') => return Ok(out),
                Some('\\') => {
                    let c = self
                        .bump()
                        .ok_or_else(|| self.err_at(here, "unterminated escape"))?;
                    match c {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => out.push(self.parse_unicode_escape(here)?),
                        c => {
                            return Err(self.err_at(here, format!("invalid escape '\\{c}'")));
                        }
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn hex4(&mut self, at: usize) -> Result<u32, ParseError> {
        let digits = self.rest().get(..4).unwrap_or("");
        let v = u32::from_str_radix(digits, 16)
            .ok()
            .filter(|_| digits.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| self.err_at(at, "invalid \\u escape: expected four hex digits"))?;
        self.pos += 4;
        Ok(v)
    }

    fn parse_unicode_escape(&mut self, at: usize) -> Result<char, ParseError> {
        let hi = self.hex4(at)?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.rest().starts_with("\\u") {
                return Err(self.err_at(at, "unpaired surrogate in \\u escape"));
            }
            self.pos += 2;
            let lo = self.hex4(at)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err_at(at, "unpaired surrogate in \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.err_at(at, "invalid \\u escape"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn field<'a>(obj: &'a Object, key: &str) -> &'a Field {
        obj.items
            .iter()
            .find_map(|i| match i {
                Item::Field(f) if f.path.join(".") == key => Some(f),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no field {key}"))
    }

    fn root(doc: &Document) -> &Object {
        match &doc.root.value {
            Value::Object(o) => o,
            _ => panic!("root is not an object"),
        }
    }

    #[test]
    fn line_col_counts_chars() {
        let s = "ab\ncé\nx";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 6), (2, 3));
        assert_eq!(line_col(s, 7), (3, 1));
    }

    #[test]
    fn separators_comments_and_shorthand() {
        let src = "# c\na = 1 // c\nb : \"x\" # c\nc { d = true }, e.f.g = null\n";
        let doc = parse(src).unwrap();
        let o = root(&doc);
        assert_eq!(o.items.len(), 4);
        assert!(matches!(field(o, "a").value.value, Value::Scalar(Scalar::Num(ref n)) if n == "1"));
        assert!(matches!(field(o, "b").value.value, Value::Scalar(Scalar::Str(ref s)) if s == "x"));
        assert!(matches!(field(o, "c").value.value, Value::Object(_)));
        assert_eq!(field(o, "e.f.g").path, vec!["e", "f", "g"]);
        let a = field(o, "a");
        assert_eq!(&src[a.value.span.start..a.value.span.end], "1");
    }

    #[test]
    fn unquoted_concatenation_and_hosts() {
        let doc = parse("t = 2 hours\nh = [ 10.0.0.1, \"x\" ,]\n").unwrap();
        let o = root(&doc);
        assert!(matches!(field(o, "t").value.value, Value::Concat(ref p) if p.len() == 3));
        match &field(o, "h").value.value {
            Value::Array(a) => {
                assert_eq!(a.len(), 2);
                assert!(matches!(a[0].value, Value::Scalar(Scalar::Str(ref s)) if s == "10.0.0.1"));
            }
            _ => panic!("not an array"),
        }
    }

    #[test]
    fn quoted_keys_and_escapes() {
        let doc =
            parse("\"a.b\".c = \"q\\\"\\u00e9\\n\"\nx = \"\"\"raw \"quoted\"\n\"\"\"\"\n").unwrap();
        let o = root(&doc);
        let f = field(o, "a.b.c");
        assert_eq!(f.path, vec!["a.b", "c"]);
        assert!(matches!(f.value.value, Value::Scalar(Scalar::Str(ref s)) if s == "q\"é\n"));
        assert!(
            matches!(field(o, "x").value.value, Value::Scalar(Scalar::Str(ref s)) if s == "raw \"quoted\"\n\"")
        );
    }

    #[test]
    fn root_braces_substitutions_and_include() {
        let doc = parse("{\n include \"other.conf\"\n a = ${?b.c}\n d += 1\n}\n").unwrap();
        let o = root(&doc);
        assert!(o.braced);
        assert!(matches!(&o.items[0], Item::Include(i) if i.target == "\"other.conf\""));
        assert!(matches!(&field(o, "a").value.value,
            Value::Subst { path, optional: true } if path == &vec!["b".to_owned(), "c".to_owned()]));
        assert!(field(o, "d").append);
        let doc = parse("include required(file(\"/x.conf\"))\n").unwrap();
        assert!(
            matches!(&root(&doc).items[0], Item::Include(i) if i.target == "required(file(\"/x.conf\"))")
        );
        // A key that merely starts with "include".
        assert!(parse("include-me = 1\n").is_ok());
    }

    #[test]
    fn errors_carry_positions() {
        let e = parse("a {\n  b = 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1));
        assert!(e.message.contains("line 1, column 3"), "{}", e.message);
        let e = parse("a = 1\nb = \"x\ny\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7));
        let e = parse("a = [1,,2]").unwrap_err();
        assert_eq!((e.line, e.column), (1, 8));
        let e = parse("a = 1 2 = 3").unwrap_err();
        assert_eq!((e.line, e.column), (1, 9));
        let e = parse("x\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 2));
        let e = parse("x // c\ny = 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 7));
        assert!(e.message.ends_with("found end of line"), "{}", e.message);
        let e = parse("a.  = 1").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("a = b }").unwrap_err();
        assert_eq!((e.line, e.column), (1, 7));
    }

    #[test]
    fn separator_may_follow_new_lines_and_comments() {
        let doc = parse("jibri\n{\n a = 1\n}\nb // c\n\n= 2\n").unwrap();
        let o = root(&doc);
        assert!(matches!(field(o, "jibri").value.value, Value::Object(_)));
        assert!(matches!(field(o, "b").value.value, Value::Scalar(Scalar::Num(ref n)) if n == "2"));
    }

    #[test]
    fn numbers() {
        assert!(is_number("0"));
        assert!(is_number("-1.5e3"));
        assert!(!is_number("10.0.0.1"));
        assert!(!is_number("inf"));
        assert!(!is_number("1."));
    }
}
