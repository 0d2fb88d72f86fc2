//! Small text helpers for rendering: word wrapping to a width and truncation with an
//! ellipsis, counted in characters (every string the console shows is made of
//! single-width characters).

/// Splits `text` into lines of at most `width` characters, breaking at spaces where it
/// can and inside words longer than a line. Newlines in `text` are kept.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut len = 0;
        for word in paragraph.split(' ') {
            let mut word: Vec<char> = word.chars().collect();
            let sep = usize::from(len > 0);
            if len + sep + word.len() <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                len += sep + word.len();
                continue;
            }
            if len > 0 {
                out.push(std::mem::take(&mut line));
            }
            while word.len() > width {
                let rest = word.split_off(width);
                out.push(word.iter().collect());
                word = rest;
            }
            line.extend(word.iter());
            len = word.len();
        }
        out.push(line);
    }
    out
}

/// `text` cut to `width` characters, ending in `…` when cut.
pub(crate) fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut s: String = text.chars().take(width - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_and_splits_long_words() {
        assert_eq!(wrap("promote app2 now", 8), ["promote", "app2 now"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb c", 10), ["a", "b c"]);
        assert_eq!(wrap("", 5), [""]);
    }

    #[test]
    fn truncates_with_an_ellipsis() {
        assert_eq!(truncate("secondary", 6), "secon…");
        assert_eq!(truncate("up", 6), "up");
        assert_eq!(truncate("x", 0), "");
    }
}
