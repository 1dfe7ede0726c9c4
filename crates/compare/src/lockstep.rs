//! The fast path of a JSON comparison: both answers walked token by token together,
//! without building either document, for the pairs that simply match.
//!
//! Most shadowed pairs match (that is what a good candidate does), and proving a match
//! needs no tree: numbers whose text is equal are equal without being parsed, and the
//! others are parsed with an exact fast path. [`quick_match`] answers `Some` only when
//! it has proven a match — with the same deviation and label agreement the full
//! comparison would report, a property the tests check against it. Anything else (a
//! difference, a string escape, keys in another order, V2 outputs or other named
//! outputs, a select deeper than one key or of several parts) makes it give up with
//! `None`, and the caller runs the full comparison, which explains differences with
//! JSON pointers. A select that names a V2 output (`/outputs/label`) is deeper than
//! one key, so the fast path never has to know outputs by name.

use veer_config::Compare;

use crate::json::MAX_DEPTH;
use crate::numbers::{self, Argmax, Shift, Tolerance, Verdict};

/// A proven match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuickMatch {
    /// Largest absolute difference between paired numbers, if any were paired.
    pub max_abs_deviation: Option<f64>,
    /// For classification outputs, whether the predicted classes agree.
    pub label_agreement: Option<bool>,
    /// Which way the shadow's numbers moved (the same pairs as the full comparison
    /// counts; the sums may differ from its in the last bits, as the two walks add
    /// object members in another order).
    pub shift: Shift,
}

/// Proves that two JSON answers match under `settings`, or gives up.
pub fn quick_match(settings: &Compare, live: &[u8], shadow: &[u8]) -> Option<QuickMatch> {
    simdutf8::basic::from_utf8(live).ok()?;
    simdutf8::basic::from_utf8(shadow).ok()?;
    let select = match settings.select.as_slice() {
        [] => None,
        [whole] if whole.is_empty() => None,
        [pointer] => {
            let key = pointer.strip_prefix('/')?;
            if key.contains(['/', '~']) {
                return None;
            }
            Some(key)
        }
        // Several parts, each judged on its own: the full comparison's to pair.
        _ => return None,
    };
    let ignore: Vec<&str> = settings
        .ignore
        .iter()
        .map(|p| single_segment(p, select))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut walk = Lockstep {
        a: Cursor { text: live, at: 0 },
        b: Cursor {
            text: shadow,
            at: 0,
        },
        tolerance: Tolerance {
            abs: settings.abs_tolerance,
            rel: settings.rel_tolerance,
        },
        threshold: settings.threshold,
        max_abs_deviation: None,
        shift: Shift::default(),
        labels: Labels::Unread,
    };
    walk.document(select, &ignore)?;
    Some(QuickMatch {
        max_abs_deviation: walk.max_abs_deviation,
        label_agreement: walk.labels.agreement(),
        shift: walk.shift,
    })
}

/// An ignore pointer as one key of the compared value: `Some(None)` when it lies
/// outside the selection (nothing to ignore), `None` when it is deeper than one key.
fn single_segment<'p>(pointer: &'p str, select: Option<&str>) -> Option<Option<&'p str>> {
    let rest = match select {
        None => pointer,
        Some(key) => match pointer.strip_prefix('/')?.strip_prefix(key) {
            Some(rest) if rest.starts_with('/') => rest,
            Some("") => return None,
            _ => return Some(None),
        },
    };
    let key = rest.strip_prefix('/')?;
    (!key.contains(['/', '~'])).then_some(Some(key))
}

struct Cursor<'t> {
    text: &'t [u8],
    at: usize,
}

impl<'t> Cursor<'t> {
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.text.get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string without escapes, as raw bytes (escapes make the fast path give up).
    fn string(&mut self) -> Option<&'t [u8]> {
        self.eat(b'"')?;
        let start = self.at;
        let len = memchr::memchr2(b'"', b'\\', &self.text[start..])?;
        let raw = &self.text[start..start + len];
        if self.text[start + len] == b'\\' || raw.iter().any(|&b| b < 0x20) {
            return None;
        }
        self.at = start + len + 1;
        Some(raw)
    }

    /// A number, checked against the JSON grammar as it is read; short decimals
    /// (at most 15 digits, no exponent: the usual prediction) get their exact value
    /// on the way (Clinger's fast path: a mantissa below 2^53 divided by an exact
    /// power of ten is correctly rounded).
    #[inline(always)]
    fn number(&mut self) -> Option<Number<'t>> {
        self.peek()?;
        let text = self.text;
        let start = self.at;
        let mut i = start;
        let negative = text.get(i) == Some(&b'-');
        i += usize::from(negative);
        let (mut mantissa, int_start) = (0u64, i);
        i = digits(text, i, &mut mantissa);
        let int_digits = i - int_start;
        if int_digits == 0 || (int_digits > 1 && text[int_start] == b'0') {
            return None;
        }
        let mut fraction_digits = 0;
        if text.get(i) == Some(&b'.') {
            i += 1;
            let from = i;
            i = many_digits(text, i, &mut mantissa);
            fraction_digits = i - from;
            if fraction_digits == 0 {
                return None;
            }
        }
        let mut exponent = false;
        if matches!(text.get(i), Some(b'e' | b'E')) {
            exponent = true;
            i += 1;
            if matches!(text.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let from = i;
            while text.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == from {
                return None;
            }
        }
        self.at = i;
        let short = !exponent && int_digits + fraction_digits <= 15;
        let value = short.then(|| {
            // Below 10^15: the signed conversion is exact, and one instruction.
            let v = mantissa as i64 as f64 / POW10[fraction_digits];
            if negative {
                -v
            } else {
                v
            }
        });
        Some(Number {
            text: &text[start..i],
            integer: !exponent && fraction_digits == 0,
            value,
        })
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.peek()?;
        let end = self.at + word.len();
        (self.text.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Reads one value without comparing it (ignored or outside the selection).
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => {
                self.at += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.eat(b':')?;
                    self.skip(depth + 1)?;
                    if self.eat(b',').is_none() {
                        return self.eat(b'}');
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    if self.eat(b',').is_none() {
                        return self.eat(b']');
                    }
                }
            }
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }
}

/// What the prediction's shape says about classes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Labels {
    /// The prediction has not been read (yet).
    Unread,
    /// Label strings: equal on both sides, since they matched.
    Texts,
    /// Rows of class probabilities, or binary scores under a threshold: whether
    /// every row's class agreed so far.
    Rows(bool),
    /// Read, and not a classification output by the labels heuristics.
    NotClasses,
}

impl Labels {
    fn agreement(self) -> Option<bool> {
        match self {
            Labels::Texts => Some(true),
            Labels::Rows(agree) => Some(agree),
            Labels::Unread | Labels::NotClasses => None,
        }
    }
}

/// Objects with more keys than this are left to the full comparison, which indexes
/// keys; here each key is checked against those before it (a repeated key gives up).
const MAX_KEYS: usize = 32;

/// Notes `key` among an object's `seen` keys; `None` (give up) when it repeats one or
/// the object has more than [`MAX_KEYS`].
fn first_sighting<'t>(seen: &mut Vec<&'t [u8]>, key: &'t [u8]) -> Option<()> {
    (seen.len() < MAX_KEYS && !seen.contains(&key)).then(|| seen.push(key))
}

/// Both answers' cursors, advanced together.
struct Lockstep<'t> {
    a: Cursor<'t>,
    b: Cursor<'t>,
    tolerance: Tolerance,
    /// `compare.threshold`: binary scores at or above it are class 1.
    threshold: Option<f64>,
    max_abs_deviation: Option<f64>,
    shift: Shift,
    labels: Labels,
}

impl<'t> Lockstep<'t> {
    /// The whole answer: only the selected member (or, by default, the whole value)
    /// is compared; the prediction read for labels is the selection, else the root's
    /// `predictions` member, else a root array — the shapes the full comparison reads
    /// labels from too. Other shapes give up.
    fn document(&mut self, select: Option<&str>, ignore: &[&str]) -> Option<()> {
        if self.a.peek()? != b'{' {
            if select.is_some() {
                return None;
            }
            self.prediction(0)?;
        } else {
            self.a.eat(b'{')?;
            self.b.eat(b'{')?;
            let mut found = false;
            let mut seen: Vec<&[u8]> = Vec::new();
            if self.a.eat(b'}').is_none() {
                loop {
                    let (ka, kb) = (self.a.string()?, self.b.string()?);
                    // Keys in another order, repeated keys, V2 outputs and V2 data
                    // are the full comparison's to handle.
                    if ka != kb || ka == b"outputs" || ka == b"data" {
                        return None;
                    }
                    first_sighting(&mut seen, ka)?;
                    self.a.eat(b':')?;
                    self.b.eat(b':')?;
                    let key = std::str::from_utf8(ka).ok()?;
                    let is_prediction = select.map_or(key == "predictions", |s| s == key);
                    if is_prediction {
                        if ignore.contains(&key) {
                            return None;
                        }
                        found = true;
                        self.prediction(1)?;
                    } else if select.is_some() || ignore.contains(&key) {
                        self.a.skip(1)?;
                        self.b.skip(1)?;
                    } else {
                        self.value(1)?;
                    }
                    if !self.more()? {
                        break;
                    }
                }
                self.a.eat(b'}')?;
            }
            self.b.eat(b'}')?;
            if !found {
                return None;
            }
        }
        // Nothing may follow the value.
        (self.a.peek().is_none() && self.b.peek().is_none()).then_some(())
    }

    /// The prediction value: compared, and read for labels the way the full
    /// comparison reads them (the first item decides the kind, every item must fit).
    fn prediction(&mut self, depth: usize) -> Option<()> {
        match self.a.peek()? {
            b'[' => {}
            b'{' => return None,
            _ => {
                self.labels = Labels::NotClasses;
                return self.value(depth);
            }
        }
        self.a.eat(b'[')?;
        self.b.eat(b'[')?;
        if self.a.eat(b']').is_some() {
            self.labels = Labels::NotClasses;
            return self.b.eat(b']');
        }
        let kind = self.a.peek()?;
        if kind == b'{' {
            // A list of objects may be V2-style named outputs: the full comparison
            // pairs them by name.
            return None;
        }
        let (mut fits, mut agree) = (true, true);
        let mut flat: Vec<(f64, f64)> = Vec::new();
        loop {
            match (kind, self.a.peek()?) {
                (b'[', b'[') => match self.row(depth + 1)? {
                    (Some(x), Some(y)) => agree &= x == y,
                    _ => fits = false,
                },
                (b'"', b'"') => self.value(depth + 1)?,
                (b'-' | b'0'..=b'9', b'-' | b'0'..=b'9') => flat.push(self.number_pair()?),
                _ => {
                    fits = false;
                    self.value(depth + 1)?;
                }
            }
            if !self.more()? {
                break;
            }
        }
        self.a.eat(b']')?;
        self.b.eat(b']')?;
        self.labels = match (fits, kind) {
            (true, b'[') => Labels::Rows(agree),
            (true, b'"') => Labels::Texts,
            (true, b'-' | b'0'..=b'9') => flat_labels(&flat, self.threshold),
            _ => Labels::NotClasses,
        };
        Some(())
    }

    /// One row of numbers: compared, with each side's class ([`Argmax::class`]: the
    /// argmax of two or more, a lone score under a threshold; None when the row is
    /// not numbers, or a lone number without a threshold).
    fn row(&mut self, depth: usize) -> Option<(Option<usize>, Option<usize>)> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.a.eat(b'[')?;
        self.b.eat(b'[')?;
        if self.a.eat(b']').is_some() {
            self.b.eat(b']')?;
            return Some((None, None));
        }
        let (mut live, mut shadow) = (Argmax::default(), Argmax::default());
        let mut numeric = true;
        loop {
            if matches!(self.a.peek()?, b'-' | b'0'..=b'9') {
                let (x, y) = self.number_pair()?;
                live.push(x);
                shadow.push(y);
            } else {
                numeric = false;
                self.value(depth + 1)?;
            }
            if !self.more()? {
                break;
            }
        }
        self.a.eat(b']')?;
        self.b.eat(b']')?;
        Some(if numeric {
            (live.class(self.threshold), shadow.class(self.threshold))
        } else {
            (None, None)
        })
    }

    /// After an item: `Some(true)` when both sides go on (a comma), `Some(false)`
    /// when both end, `None` when one side has more items than the other.
    #[inline(always)]
    fn more(&mut self) -> Option<bool> {
        match (self.a.eat(b',').is_some(), self.b.eat(b',').is_some()) {
            (true, true) => Some(true),
            (false, false) => Some(false),
            _ => None,
        }
    }

    /// Any value, compared.
    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.a.peek()? {
            b'{' => {
                self.a.eat(b'{')?;
                self.b.eat(b'{')?;
                if self.a.eat(b'}').is_some() {
                    return self.b.eat(b'}');
                }
                let mut seen: Vec<&[u8]> = Vec::new();
                loop {
                    let (ka, kb) = (self.a.string()?, self.b.string()?);
                    if ka != kb {
                        return None;
                    }
                    first_sighting(&mut seen, ka)?;
                    self.a.eat(b':')?;
                    self.b.eat(b':')?;
                    self.value(depth + 1)?;
                    if !self.more()? {
                        break;
                    }
                }
                self.a.eat(b'}')?;
                self.b.eat(b'}')
            }
            b'[' => {
                self.a.eat(b'[')?;
                self.b.eat(b'[')?;
                if self.a.eat(b']').is_some() {
                    return self.b.eat(b']');
                }
                loop {
                    self.value(depth + 1)?;
                    if !self.more()? {
                        break;
                    }
                }
                self.a.eat(b']')?;
                self.b.eat(b']')
            }
            b'"' => (self.a.string()? == self.b.string()?).then_some(()),
            b't' => self
                .a
                .literal(b"true")
                .and_then(|()| self.b.literal(b"true")),
            b'f' => self
                .a
                .literal(b"false")
                .and_then(|()| self.b.literal(b"false")),
            b'n' => self
                .a
                .literal(b"null")
                .and_then(|()| self.b.literal(b"null")),
            _ => self.number_pair().map(drop),
        }
    }

    /// Two numbers that must be equal within tolerance; their values.
    #[inline(always)]
    fn number_pair(&mut self) -> Option<(f64, f64)> {
        let (x, y) = (self.a.number()?, self.b.number()?);
        let (verdict, vx, vy) = if x.integer && y.integer {
            let (p, q) = (parse_int(x.text)?, parse_int(y.text)?);
            (self.tolerance.integers(p, q), p as f64, q as f64)
        } else {
            let (p, q) = (x.float()?, y.float()?);
            (self.tolerance.floats(p, q), p, q)
        };
        let Verdict {
            equal,
            deviation,
            shift,
        } = verdict;
        if !equal {
            return None;
        }
        self.shift.add(shift);
        self.max_abs_deviation = Some(
            self.max_abs_deviation
                .map_or(deviation, |m| m.max(deviation)),
        );
        Some((vx, vy))
    }
}

/// Reads the decimal digits of `text` from `at` into `mantissa` (wrapping: the value
/// is only used when there are at most 15 of them); returns where they end. A byte
/// at a time: for an integer part, usually one digit.
#[inline(always)]
fn digits(text: &[u8], mut at: usize, mantissa: &mut u64) -> usize {
    while let Some(d) = text
        .get(at)
        .map(|c| c.wrapping_sub(b'0'))
        .filter(|d| *d <= 9)
    {
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        at += 1;
    }
    at
}

/// [`digits`] eight bytes at a time while eight are left ([`digit_run`]), for a
/// fraction: predictions print six to nine fraction digits, and a byte at a time
/// they cost a branch each.
#[inline(always)]
fn many_digits(text: &[u8], mut at: usize, mantissa: &mut u64) -> usize {
    while let Some(chunk) = text.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let (count, value) = digit_run(u64::from_le_bytes(*chunk));
        *mantissa = mantissa.wrapping_mul(POW10_INT[count]).wrapping_add(value);
        at += count;
        if count < 8 {
            return at;
        }
    }
    digits(text, at, mantissa)
}

/// The leading decimal digits of eight bytes of text (read little-endian: the first
/// byte lowest): how many there are, and their value. SWAR, as fast_float and
/// simdjson parse eight digits at once.
#[inline(always)]
fn digit_run(chunk: u64) -> (usize, u64) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Each byte minus '0' (xor: no borrow between bytes); a digit is then below 10.
    let x = chunk ^ (ONES * u64::from(b'0'));
    // A byte's top bit is set in `x + 0x76` when it is 10 or more (or set in `x`
    // already). A carry out of a non-digit byte can only corrupt the bytes after
    // it, and only the first non-digit counts.
    let non_digits = (x.wrapping_add(ONES * 0x76) | x) & (ONES * 0x80);
    let count = (non_digits.trailing_zeros() / 8) as usize;
    if count == 0 {
        return (0, 0);
    }
    // The digits moved to the top bytes, with zeros (leading zeros) below them.
    let digits = x << (8 * (8 - count));
    // Pairs of digits, then pairs of pairs: 10a + b in every other byte, then the
    // two halves' four-digit values multiplied into place and summed.
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let value = (pairs & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((pairs >> 16) & MASK).wrapping_mul(MUL2))
        >> 32;
    (count, value)
}

/// 10^n for the digit counts of [`digit_run`].
const POW10_INT: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// A number as read: its text, and its value when the fast path knew it.
struct Number<'t> {
    text: &'t [u8],
    integer: bool,
    value: Option<f64>,
}

impl Number<'_> {
    /// The correctly rounded value (the standard parser past the fast path; values
    /// beyond f64 are refused, as the full comparison's parser refuses them).
    #[inline(always)]
    fn float(&self) -> Option<f64> {
        match self.value {
            Some(v) => Some(v),
            None => {
                let v: f64 = std::str::from_utf8(self.text).ok()?.parse().ok()?;
                v.is_finite().then_some(v)
            }
        }
    }
}

/// A flat list of numbers: under a threshold one binary score per row; without one,
/// a single probability vector only when each side looks like one.
fn flat_labels(row: &[(f64, f64)], threshold: Option<f64>) -> Labels {
    if let Some(t) = threshold {
        let class = |score| numbers::score_class(score, t);
        return Labels::Rows(row.iter().all(|&(x, y)| class(x) == class(y)));
    }
    let (live, shadow) = (row.iter().map(|v| v.0), row.iter().map(|v| v.1));
    if numbers::is_distribution(live.clone()) && numbers::is_distribution(shadow.clone()) {
        Labels::Rows(numbers::argmax(live) == numbers::argmax(shadow))
    } else {
        Labels::NotClasses
    }
}

/// An integer the way the full comparison reads it (i64, else u64, as i128).
fn parse_int(text: &[u8]) -> Option<i128> {
    let s = std::str::from_utf8(text).ok()?;
    let v: i128 = s.parse().ok()?;
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&v)
        .then_some(v)
}

/// Exact powers of ten up to 10^22: the range where a float is exactly representable.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_float_path_is_exact() {
        for text in [
            "0.123456",
            "-0.5",
            "12.25",
            "0.1",
            "3",
            "1e-7",
            "123456789012345678901234.5",
            "2.5E+3",
            "0.999999999999999",
        ] {
            let mut c = Cursor {
                text: text.as_bytes(),
                at: 0,
            };
            let n = c.number().expect("a number");
            assert_eq!(n.float(), text.parse::<f64>().ok(), "{text}");
            assert_eq!(c.at, text.len());
        }
    }

    /// The digits of `text` from `at`, one by one: what [`many_digits`] must find.
    fn digits_one_by_one(text: &[u8], at: usize) -> (usize, u64) {
        let count = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mantissa = text[at..at + count].iter().fold(0u64, |m, b| {
            m.wrapping_mul(10).wrapping_add(u64::from(b - b'0'))
        });
        (at + count, mantissa)
    }

    #[test]
    fn digits_eight_at_a_time_read_as_one_at_a_time() {
        // Every length of run up to 20 (across the eight-byte boundary and the tail),
        // followed by each kind of byte that ends a number in JSON (or by nothing),
        // at every offset after a prefix.
        let ends: [&[u8]; 9] = [b"", b",", b"]", b"}", b".", b"e", b" ", b"\n", b"-"];
        for run in 0..=20 {
            let digits: Vec<u8> = (0..run).map(|i| b"9072815364"[i % 10]).collect();
            for end in ends {
                for prefix in 0..3 {
                    let mut text = vec![b'['; prefix];
                    text.extend_from_slice(&digits);
                    text.extend_from_slice(end);
                    text.extend_from_slice(b"123");
                    let mut mantissa = 0;
                    let at = many_digits(&text, prefix, &mut mantissa);
                    assert_eq!(
                        (at, mantissa),
                        digits_one_by_one(&text, prefix),
                        "{:?}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
        // Bytes next to the digits in ASCII, and high bytes, are not digits.
        for b in [b'/', b':', 0x80, 0xb0, 0xb9, 0xff, 0x00, 0x2f] {
            let text = [b'1', b'2', b, b'3', b'4', b'5', b'6', b'7', b'8', b'9'];
            let mut mantissa = 0;
            assert_eq!(many_digits(&text, 0, &mut mantissa), 2, "{b:#x}");
            assert_eq!(mantissa, 12);
        }
    }

    #[test]
    fn the_grammar_is_enforced() {
        for bad in ["01", "1.", "-", ".5", "1e", "1e+"] {
            let mut c = Cursor {
                text: bad.as_bytes(),
                at: 0,
            };
            let whole = c.number().is_some_and(|n| n.text.len() == bad.len());
            assert!(!whole, "{bad} accepted");
        }
    }
}
