//! Errors and warnings about the routing file, each pinned to `file:line:col`.

use std::fmt;
use std::ops::Range;

/// Whether a finding stops the file from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be served; the running config (if any) keeps serving.
    Error,
    /// The file loads, but something in it is probably not what the user meant.
    Warning,
}

/// One finding about the routing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file as the user named it.
    pub file: String,
    /// 1-based line of the offending TOML.
    pub line: usize,
    /// 1-based column (in characters) of the offending TOML.
    pub column: usize,
    /// What is wrong and what was expected instead.
    pub message: String,
    /// The source line, shown under the message.
    pub source_line: String,
    /// Width of the caret underline, in characters (at least 1).
    pub underline: usize,
}

impl Diagnostic {
    /// Pins `message` to the byte `span` of `source`.
    pub(crate) fn new(
        severity: Severity,
        file: &str,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let source_line = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_owned();
        let end = span.end.clamp(start, line_end);
        Diagnostic {
            severity,
            file: file.to_owned(),
            line: source[..start].matches('\n').count() + 1,
            column: source[line_start..start].chars().count() + 1,
            message: message.into(),
            underline: source[start..end].chars().count().max(1),
            source_line,
        }
    }

    /// Replaces `len` characters of the source line from 1-based `column` with `*`,
    /// keeping every column (and the caret) where it was.
    pub(crate) fn mask(&mut self, column: usize, len: usize) {
        let start = column.saturating_sub(1);
        self.source_line = self
            .source_line
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i >= start && i < start + len {
                    '*'
                } else {
                    c
                }
            })
            .collect();
    }

    /// A warning about the file as a whole (what a reload changes, say), not one
    /// place in it.
    pub fn warning_about(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::whole_file(file, message)
        }
    }

    /// The finding as JSON, for `veer check --format json`: severity, file, line,
    /// column and message.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "severity": match self.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        })
    }

    /// A finding about the file as a whole (it could not be read, say).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: message.into(),
            source_line: String::new(),
            underline: 1,
        }
    }
}

/// `file:line:col: error: message`, then the line with a caret under the culprit.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {kind}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.source_line.is_empty() {
            let gutter = self.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {:pad$}{}",
                "",
                self.line,
                self.source_line,
                "",
                "",
                "^".repeat(self.underline),
                pad = self.column - 1,
            )?;
        }
        Ok(())
    }
}

/// All the errors (and warnings) that kept a file from loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The errors only, in file order.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let src = "a = 1\nbé = \"x\"\n";
        let at = src.find("\"x\"").unwrap();
        let d = Diagnostic::new(Severity::Error, "f.toml", src, at..at + 3, "bad");
        assert_eq!((d.line, d.column, d.underline), (2, 6, 3));
        assert_eq!(
            d.to_string(),
            "f.toml:2:6: error: bad\n  |\n2 | bé = \"x\"\n  |      ^^^"
        );
    }

    #[test]
    fn span_past_the_end_is_clamped_not_a_panic() {
        let d = Diagnostic::new(Severity::Warning, "f", "abc", 10..20, "eof");
        assert_eq!((d.line, d.column), (1, 4));
    }
}
