//! Diagnostics for heist files: `file:line:col: message`, from byte offsets into the text.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a heist file, located by line and column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every problem found in one file (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

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

impl std::error::Error for Diagnostics {}

/// Turns byte offsets of one file into diagnostics.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        crate::textpos::line_col(self.text, offset)
    }

    pub fn at(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.line_col(offset);
        Diagnostic {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// Offset of byte `pos` of a string value whose TOML literal spans `span`. Exact when the
    /// literal holds the value verbatim (no escapes before `pos`), else the literal's start.
    pub fn in_string(&self, span: &std::ops::Range<usize>, value: &str, pos: usize) -> usize {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let quote = ["\"\"\"", "'''", "\"", "'"]
            .iter()
            .find(|q| raw.starts_with(**q))
            .map(|q| q.len())
            .unwrap_or(0);
        let body = raw.get(quote..).unwrap_or("");
        match (body.get(..pos), value.get(..pos)) {
            (Some(a), Some(b)) if a == b => span.start + quote + pos,
            _ => span.start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncdé\nx";
        let s = Source {
            path: Path::new("f.toml"),
            text,
        };
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(text.find('x').expect("x")), (3, 1));
        assert_eq!(s.at(4, "bad").to_string(), "f.toml:2:2: bad");
    }

    #[test]
    fn positions_inside_strings() {
        let text = r#"run = "echo ${x}""#;
        let s = Source {
            path: Path::new("f"),
            text,
        };
        let span = 6..text.len();
        assert_eq!(s.in_string(&span, "echo ${x}", 5), 12);
    }
}
