//! The routing file read as a TOML document, before serde reads it into the raw
//! structs.
//!
//! serde stops at the first key a struct does not declare, so unknown keys are found
//! here first, all of them. The document is walked against the keys the raw structs
//! declare ([`crate::schema`]); each unknown key becomes a finding at its own place,
//! with "did you mean" when a known key of its table is close, and is removed before
//! serde reads the rest. A suggestion is also taken: the file is read again as if the
//! key were written as suggested, so what the key holds is still validated (a
//! misspelt `wieght` does not also make `weight` missing), and a misspelt header
//! (`[[route]]`) does not move the tables after it onto another table (its
//! `[routes.shadow]` onto the route before, a duplicate key). [`Corrections`] maps
//! positions in that corrected text back to the file as written.
//!
//! serde also stops at the first value of the wrong type. Such a value's key is
//! taken out and the rest read again, so every one is found ([`read_past_misreads`]);
//! a required key taken out ends the reading there, unreported (it is the wrong
//! value's consequence, already said).

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::raw::RawConfig;
use crate::schema::{shape_at, Shape, Step};

/// The routing file, read as far as serde: what it says, and every key it holds that
/// veer does not know.
pub(crate) struct Reading {
    /// Maps the spans in `raw` (taken from the corrected text) back to the file.
    pub corrections: Corrections,
    /// Every unknown key, placed in the file as written, in file order. Empty when
    /// the file is not valid TOML: its syntax error comes first.
    pub unknown: Vec<UnknownKey>,
    /// The raw config, when serde could read it (with the keys of wrong values taken
    /// out, if any; those are in `misread`).
    pub raw: Option<RawConfig>,
    /// What serde could not read, in file order: a syntax error (then alone), or
    /// every value of the wrong type.
    pub misread: Vec<Misread>,
}

/// A key (or a table header) veer does not know.
#[derive(Debug)]
pub(crate) struct UnknownKey {
    /// The key, or the whole header that brought it in, in the file as written.
    pub span: Range<usize>,
    /// What is unknown, and the key meant or the keys expected.
    pub message: String,
    /// The strings under a key left unknown, in the file as written: never shown in
    /// a finding, since they may be secrets (a `headers` table outside `match`, say).
    pub values: Vec<Range<usize>>,
}

/// Why the file could not be read into the raw structs.
#[derive(Debug)]
pub(crate) struct Misread {
    /// In the file as written.
    pub span: Range<usize>,
    pub message: String,
}

/// Reads `source`, collecting every unknown key and taking each suggestion that does
/// not make the file parse worse.
pub(crate) fn read(source: &str) -> Reading {
    let mut corrections = Corrections::default();
    // Unknown keys whose suggestion was taken, and places whose suggestion was refused.
    let mut taken: Vec<UnknownKey> = Vec::new();
    let mut refused: Vec<Range<usize>> = Vec::new();
    loop {
        let text = corrections.apply(source);
        let (mut doc, syntax) = DeTable::parse_recoverable(&text);
        let found = Walker::check(&text, doc.get_mut());
        let at_discovery = corrections.clone();
        let (to_try, left): (Vec<Found>, Vec<Found>) = found.into_iter().partition(|f| {
            f.correction.is_some() && !refused.contains(&at_discovery.original(f.span.clone()))
        });
        if to_try.is_empty() {
            if let Some(e) = syntax.first() {
                let span = corrections.original(e.span().unwrap_or(0..0));
                let message = e.message().trim_end().to_owned();
                return Reading {
                    corrections,
                    unknown: Vec::new(),
                    raw: None,
                    misread: vec![Misread { span, message }],
                };
            }
            let mut unknown = taken;
            unknown.extend(left.into_iter().map(|f| f.placed(&corrections, false)));
            unknown.sort_by_key(|u| u.span.start);
            let (raw, misread) = match RawConfig::deserialize(toml::de::Deserializer::from(doc)) {
                Ok(raw) => (Some(raw), Vec::new()),
                Err(first) => read_past_misreads(&text, first, &corrections),
            };
            return Reading {
                corrections,
                unknown,
                raw,
                misread,
            };
        }
        // A suggestion is kept only if the file parses no worse with it (`wieght`
        // read as `weight` beside a `weight` would be a duplicate key): all of them
        // at once when they agree, as they almost always do, else one by one.
        let edits = |f: &Found| {
            f.correction
                .clone()
                .map(|(at, replacement)| (at_discovery.original(at), replacement))
        };
        let all = to_try
            .iter()
            .filter_map(edits)
            .fold(corrections.clone(), |c, (written, replacement)| {
                c.with(written, replacement)
            });
        if DeTable::parse_recoverable(&all.apply(source)).1.len() <= syntax.len() {
            corrections = all;
            taken.extend(to_try.into_iter().map(|f| f.placed(&at_discovery, true)));
            continue;
        }
        let mut syntax_errors = syntax.len();
        for f in to_try {
            let Some((written, replacement)) = edits(&f) else {
                continue;
            };
            let trial = corrections.with(written.clone(), replacement);
            let (_, errors) = DeTable::parse_recoverable(&trial.apply(source));
            if errors.len() <= syntax_errors {
                syntax_errors = errors.len();
                corrections = trial;
                taken.push(f.placed(&at_discovery, true));
            } else {
                refused.push(written);
            }
        }
    }
}

/// Values of the wrong type reported in one reading, at most: a file of more is
/// rewritten, not fixed line by line.
const MISREADS: usize = 64;

/// serde could not read `text` (its unknown keys removed) and said `first`: reads it
/// again with the key of each wrong value taken out, until it reads, or an error is
/// not about one value (a whole table, say), or a key taken out was required (its
/// "missing field" is not reported: the wrong value was). The raw config when it
/// read, and every misread, placed in the file as written. Only a file with a wrong
/// value pays for this.
fn read_past_misreads(
    text: &str,
    first: toml::de::Error,
    corrections: &Corrections,
) -> (Option<RawConfig>, Vec<Misread>) {
    let (mut doc, _) = DeTable::parse_recoverable(text);
    Walker::check(text, doc.get_mut());
    let mut misread = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    let mut error = first;
    loop {
        let message = error.message().trim_end().to_owned();
        let consequence = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .is_some_and(|field| taken.iter().any(|key| key == field));
        if consequence {
            return (None, misread);
        }
        let span = error.span().unwrap_or(0..0);
        let key = take_out(doc.get_mut(), &span);
        misread.push(Misread {
            span: corrections.original(span),
            message,
        });
        match key {
            Some(key) if misread.len() < MISREADS => taken.push(key),
            _ => return (None, misread),
        }
        match RawConfig::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(raw) => return (Some(raw), misread),
            Err(next) => error = next,
        }
    }
}

/// Where [`take_out`] found the value: the key it took out, by name.
enum Taken {
    /// In a table deeper in, already taken out there.
    Deeper(String),
    /// A key of this table, to take out here.
    Here(String),
}

/// Takes out of `table` the key whose value lies at `at` (or, for an array, holds
/// the item that does), when `at` lies within one value that is not a table or an
/// array; the key's name. Tables are searched whole: the span of a table made by a
/// header (`[backends.v1]`) does not cover its keys.
fn take_out(table: &mut DeTable<'_>, at: &Range<usize>) -> Option<String> {
    let mut found = None;
    for (key, value) in table.iter_mut() {
        let here = || Taken::Here(key.get_ref().to_string());
        found = match value.get_mut() {
            DeValue::Table(inner) => take_out(inner, at).map(Taken::Deeper),
            DeValue::Array(items) => items.iter_mut().find_map(|item| {
                let span = item.span();
                match item.get_mut() {
                    DeValue::Table(inner) => take_out(inner, at).map(Taken::Deeper),
                    DeValue::Array(_) => None,
                    _ => holds(&span, at).then(here),
                }
            }),
            _ => holds(&value.span(), at).then(here),
        };
        if found.is_some() {
            break;
        }
    }
    match found? {
        Taken::Deeper(name) => Some(name),
        Taken::Here(name) => {
            table.remove(name.as_str());
            Some(name)
        }
    }
}

/// Whether `outer` holds all of the non-empty `at`.
fn holds(outer: &Range<usize>, at: &Range<usize>) -> bool {
    !at.is_empty() && outer.start <= at.start && at.end <= outer.end
}

/// An unknown key as the walk finds it, placed in the text it walked.
struct Found {
    span: Range<usize>,
    /// With the suggestion, when there is one.
    message: String,
    /// With the keys expected instead: said of a key whose suggestion was refused
    /// (`wieght` beside a `weight`, say), or that has none.
    expected: String,
    values: Vec<Range<usize>>,
    /// The suggestion as an edit of the text walked: what to put in place of what.
    correction: Option<(Range<usize>, String)>,
}

impl Found {
    /// Placed in the file as written. A key whose suggestion was `taken` has its
    /// values validated like any other; one left unknown has them hidden.
    fn placed(self, corrections: &Corrections, taken: bool) -> UnknownKey {
        let (message, values) = if taken {
            (self.message, Vec::new())
        } else {
            let values = self.values.into_iter().map(|v| corrections.original(v));
            (self.expected, values.collect())
        };
        UnknownKey {
            span: corrections.original(self.span),
            message,
            values,
        }
    }
}

/// Walks a document against the schema, removing (and recording) every unknown key.
struct Walker<'t> {
    text: &'t str,
    found: Vec<Found>,
    /// Shapes probed so far, by path: a thousand routes are one shape probed once.
    shapes: HashMap<Vec<Step>, Shape>,
}

/// Whose setting a table is, for messages: a route or a backend, and how deep in the
/// path its own table lies.
#[derive(Clone)]
struct Owner {
    name: String,
    depth: usize,
}

impl Walker<'_> {
    fn check(text: &str, doc: &mut DeTable<'_>) -> Vec<Found> {
        let mut walker = Walker {
            text,
            found: Vec::new(),
            shapes: HashMap::new(),
        };
        walker.table(doc, 0..0, &mut Vec::new(), None);
        walker.found
    }

    fn value(
        &mut self,
        value: &mut Spanned<DeValue<'_>>,
        path: &mut Vec<Step>,
        owner: Option<&Owner>,
    ) {
        let span = value.span();
        match value.get_mut() {
            DeValue::Table(table) => self.table(table, span, path, owner),
            DeValue::Array(items) => {
                path.push(Step::Item);
                for item in items.iter_mut() {
                    self.value(item, path, owner);
                }
                path.pop();
            }
            _ => {}
        }
    }

    fn table(
        &mut self,
        table: &mut DeTable<'_>,
        span: Range<usize>,
        path: &mut Vec<Step>,
        owner: Option<&Owner>,
    ) {
        let known = match self.shape_at(path) {
            Shape::Table(known) => Some(known),
            Shape::Map => None,
            Shape::List | Shape::Value => return,
        };
        let own = self.owner_of(table, &span, path);
        let owner = own.as_ref().or(owner);
        let mut unknown: Vec<String> = Vec::new();
        for (key, value) in table.iter_mut() {
            let name: &str = key.get_ref();
            match known {
                Some(known) if !known.contains(&name) => {
                    unknown.push(name.to_owned());
                }
                _ => {
                    path.push(Step::Key(name.to_owned()));
                    self.value(value, path, owner);
                    path.pop();
                }
            }
        }
        let Some(known) = known else { return };
        for name in unknown {
            if let Some((key, value)) = table.get_key_value(name.as_str()) {
                let found = self.unknown(path, owner, key, value, known);
                self.found.push(found);
            }
            table.remove(name.as_str());
        }
    }

    /// The shape [`RawConfig`] gives the value at `path`.
    fn shape_at(&mut self, path: &[Step]) -> Shape {
        if let Some(shape) = self.shapes.get(path) {
            return *shape;
        }
        let shape = shape_at::<RawConfig>(path);
        self.shapes.insert(path.to_vec(), shape);
        shape
    }

    /// The route or backend whose table this is, if it is one.
    fn owner_of(&self, table: &DeTable<'_>, span: &Range<usize>, path: &[Step]) -> Option<Owner> {
        let depth = path.len();
        match path {
            [Step::Key(routes), Step::Item] if routes == "routes" => {
                let name = match table.get("name").map(|n| n.get_ref()) {
                    Some(DeValue::String(name)) => format!("route \"{name}\""),
                    _ => format!("the [[routes]] table on line {}", line_of(self.text, span)),
                };
                Some(Owner { name, depth })
            }
            [Step::Key(backends), Step::Key(name)] if backends == "backends" => Some(Owner {
                name: format!("backend \"{name}\""),
                depth,
            }),
            _ => None,
        }
    }

    fn unknown(
        &self,
        path: &[Step],
        owner: Option<&Owner>,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        known: &'static [&'static str],
    ) -> Found {
        let name: &str = key.get_ref();
        let (key_span, value_span) = (key.span(), value.span());
        let suggestion = closest(name, known);
        let is_header = self.text[value_span.clone()].starts_with('[')
            && value_span.start <= key_span.start
            && key_span.end <= value_span.end;
        // A header names its own table; only whose it is needs saying.
        let within = match (is_header, owner) {
            (true, Some(owner)) => within(&path[..owner.depth], Some(owner)),
            (true, None) => String::new(),
            (false, _) => within(path, owner),
        };
        let (span, what, written, correction) = if is_header {
            let header = self.text[value_span.clone()].to_owned();
            let correction = suggestion.map(|s| {
                let mut to = path.to_vec();
                to.push(Step::Key(s.to_owned()));
                let list = shape_at::<RawConfig>(&to) == Shape::List;
                (
                    value_span.clone(),
                    self.header_as(&value_span, &key_span, s, list),
                )
            });
            (value_span.clone(), "table", header, correction)
        } else {
            let correction = suggestion.map(|s| (key_span.clone(), s.to_owned()));
            (key_span, "key", name.to_owned(), correction)
        };
        let listed: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        let expected = format!(
            "unknown {what} `{written}`{within}; expected one of {}",
            listed.join(", ")
        );
        let message = match &correction {
            Some((_, meant)) => {
                format!("unknown {what} `{written}`{within}; did you mean `{meant}`?")
            }
            None => expected.clone(),
        };
        let mut values = Vec::new();
        strings_in(value, &mut values);
        Found {
            span,
            message,
            expected,
            values,
            correction,
        }
    }

    /// The header at `header` with its key at `key` written as `meant`, in the
    /// brackets `meant` takes: `[[...]]` for a list of tables, `[...]` otherwise.
    fn header_as(
        &self,
        header: &Range<usize>,
        key: &Range<usize>,
        meant: &str,
        list: bool,
    ) -> String {
        let written = &self.text[header.clone()];
        let brackets = if written.starts_with("[[") && written.ends_with("]]") {
            2
        } else {
            1
        };
        let before = &self.text[header.start + brackets..key.start];
        let after = &self.text[key.end..header.end - brackets];
        let (open, close) = if list { ("[[", "]]") } else { ("[", "]") };
        format!("{open}{before}{meant}{after}{close}")
    }
}

/// ` in route "churn"`, ` in shadow of route "churn"`, ` in [limits]`, or nothing at
/// the top level.
fn within(path: &[Step], owner: Option<&Owner>) -> String {
    let from = owner.map_or(0, |o| o.depth);
    let inner: Vec<&str> = path[from.min(path.len())..]
        .iter()
        .filter_map(|step| match step {
            Step::Key(key) => Some(key.as_str()),
            Step::Item => None,
        })
        .collect();
    match (owner, inner.is_empty()) {
        (None, true) => String::new(),
        (None, false) => format!(" in [{}]", inner.join(".")),
        (Some(owner), true) => format!(" in {}", owner.name),
        (Some(owner), false) => format!(" in {} of {}", inner.join("."), owner.name),
    }
}

/// The known key closest to `key`, if it is close enough to be a slip: at most one
/// edit (a transposition counts as one) per three characters of the known key.
fn closest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (strsim::osa_distance(key, k), *k))
        .filter(|(distance, k)| *distance <= (k.chars().count() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// The spans of every string inside `value`.
fn strings_in(value: &Spanned<DeValue<'_>>, spans: &mut Vec<Range<usize>>) {
    match value.get_ref() {
        DeValue::String(_) => spans.push(value.span()),
        DeValue::Array(items) => items.iter().for_each(|item| strings_in(item, spans)),
        DeValue::Table(table) => table.values().for_each(|v| strings_in(v, spans)),
        _ => {}
    }
}

/// 1-based line of byte `span.start` in `text`.
fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// The suggestions taken, as edits of the file as written; maps positions in the
/// corrected text back to the file, so every finding points at what the user wrote.
#[derive(Debug, Default, Clone)]
pub(crate) struct Corrections {
    /// In file order, none overlapping.
    edits: Vec<Edit>,
}

#[derive(Debug, Clone)]
struct Edit {
    /// The bytes of the file replaced.
    written: Range<usize>,
    /// What was read in their place.
    read: String,
}

impl Corrections {
    /// The file with every edit made.
    fn apply(&self, source: &str) -> String {
        let mut text = String::with_capacity(source.len() + 16);
        let mut from = 0;
        for edit in &self.edits {
            text.push_str(&source[from..edit.written.start]);
            text.push_str(&edit.read);
            from = edit.written.end;
        }
        text.push_str(&source[from..]);
        text
    }

    /// These corrections and one more; an edit that covers earlier ones (a header
    /// read anew around a key already read anew) takes their place.
    fn with(&self, written: Range<usize>, read: String) -> Corrections {
        let mut edits: Vec<Edit> = self
            .edits
            .iter()
            .filter(|e| !(written.start <= e.written.start && e.written.end <= written.end))
            .cloned()
            .collect();
        let at = edits.partition_point(|e| e.written.start < written.start);
        edits.insert(at, Edit { written, read });
        Corrections { edits }
    }

    /// Where `span` of the corrected text lies in the file as written. A span inside
    /// an edit becomes the whole of what the edit replaced.
    pub(crate) fn original(&self, span: Range<usize>) -> Range<usize> {
        let start = self.position(span.start, |w| w.start);
        let end = self.position(span.end, |w| w.end).max(start);
        start..end
    }

    fn position(&self, at: usize, inside: impl Fn(&Range<usize>) -> usize) -> usize {
        let mut shift: isize = 0;
        for edit in &self.edits {
            let start = edit.written.start.saturating_add_signed(shift);
            if at <= start {
                break;
            }
            let end = start + edit.read.len();
            if at < end {
                return inside(&edit.written);
            }
            shift += edit.read.len() as isize - edit.written.len() as isize;
        }
        at.saturating_add_signed(-shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_map_back_across_edits_of_other_lengths() {
        let source = "[[route]]\nnme = 1\n";
        let corrections = Corrections::default()
            .with(0..9, "[[routes]]".to_owned())
            .with(10..13, "name".to_owned());
        let text = corrections.apply(source);
        assert_eq!(text, "[[routes]]\nname = 1\n");
        let one = text.find('1').expect("in the text");
        assert_eq!(corrections.original(one..one + 1), 16..17);
        assert_eq!(&source[corrections.original(0..10)], "[[route]]");
        assert_eq!(&source[corrections.original(11..15)], "nme");
        assert_eq!(
            &source[corrections.original(3..5)],
            "[[route]]",
            "inside an edit: all it replaced"
        );
    }

    #[test]
    fn an_edit_around_earlier_ones_replaces_them() {
        let source = "[route.shadw]\n";
        let corrections = Corrections::default().with(1..6, "routes".to_owned());
        let corrections = corrections.with(0..13, "[routes.shadow]".to_owned());
        assert_eq!(corrections.apply(source), "[routes.shadow]\n");
        assert_eq!(corrections.edits.len(), 1);
    }

    #[test]
    fn a_slip_is_close_and_a_different_word_is_not() {
        let known = ["name", "split", "weight", "routes", "backend"];
        assert_eq!(closest("wieght", &known), Some("weight"));
        assert_eq!(closest("splt", &known), Some("split"));
        assert_eq!(closest("route", &known), Some("routes"));
        assert_eq!(closest("Name", &known), Some("name"));
        assert_eq!(closest("color", &known), None);
        assert_eq!(closest("upstream", &known), None);
    }
}
