//! Selection errors: a byte position, what was expected, and a caret rendering.

use std::fmt;

/// A selection that does not parse or cannot be evaluated (unknown group, group cycle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectError {
    /// Byte offset into the selection text.
    pub pos: usize,
    /// What the parser expected there, when the error is of that kind.
    pub expected: Option<String>,
    /// The whole message, e.g. "expected `)`, found end of input".
    pub message: String,
}

impl SelectError {
    pub(crate) fn expected(pos: usize, expected: &str, found: String) -> SelectError {
        SelectError {
            pos,
            expected: Some(expected.to_string()),
            message: format!("expected {expected}, found {found}"),
        }
    }

    pub(crate) fn other(pos: usize, message: impl Into<String>) -> SelectError {
        SelectError {
            pos,
            expected: None,
            message: message.into(),
        }
    }

    /// The expression, and under it a caret at the error's position with the message:
    ///
    /// ```text
    ///   role=web & (db
    ///                 ^ expected `)`, found end of input
    /// ```
    pub fn render(&self, text: &str) -> String {
        let shown: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let pos = self.pos.min(text.len());
        let col = text.char_indices().take_while(|(i, _)| *i < pos).count();
        format!("  {shown}\n  {}^ {}", " ".repeat(col), self.message)
    }

    /// 1-based column (in characters) of the error in `text`.
    pub fn column(&self, text: &str) -> usize {
        text.char_indices()
            .take_while(|(i, _)| *i < self.pos)
            .count()
            + 1
    }
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.pos)
    }
}

impl std::error::Error for SelectError {}
