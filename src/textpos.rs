//! Byte offsets to `line:col`, for `file:line:col` errors in every config format we read.

/// 1-based line and column (in characters) of byte `offset` in `text` (clamped to its end).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn lines_and_columns_count_characters() {
        let text = "a = 1\nné = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, "a = 1\nné".len()), (2, 3));
        assert_eq!(line_col(text, 1000), (3, 1));
    }
}
