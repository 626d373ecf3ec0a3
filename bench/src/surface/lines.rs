//! Which lines of a Rust file are code: a small lexer that knows comments (line, nested
//! block, doc), strings (plain, byte, raw with any number of `#`), and character literals
//! versus lifetimes. A line is code if any character outside a comment is not whitespace;
//! a line inside a multi-line string is code. It also keeps each line's comment text, for
//! the `// SAFETY:` check.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    pub code: bool,
    /// The text of the comments on this line (without the `//`, `/*` markers).
    pub comment: String,
}

impl Line {
    pub fn comment_only(&self) -> bool {
        !self.code && !self.comment.trim().is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    LineComment,
    BlockComment(u32),
    Str,
    RawStr(usize),
}

/// One entry per line of `src` (index 0 is line 1).
pub fn classify(src: &str) -> Vec<Line> {
    let chars: Vec<char> = src.chars().collect();
    let mut lines = vec![Line::default()];
    let mut state = State::Normal;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            if state == State::LineComment {
                state = State::Normal;
            }
            lines.push(Line::default());
            i += 1;
            continue;
        }
        let line = lines
            .last_mut()
            .expect("lines starts non-empty and only grows");
        match state {
            State::LineComment => line.comment.push(c),
            State::BlockComment(depth) => {
                if c == '*' && next == Some('/') {
                    state = if depth == 1 {
                        State::Normal
                    } else {
                        State::BlockComment(depth - 1)
                    };
                    i += 1;
                } else if c == '/' && next == Some('*') {
                    state = State::BlockComment(depth + 1);
                    i += 1;
                } else {
                    line.comment.push(c);
                }
            }
            State::Str => {
                line.code |= !c.is_whitespace();
                // An escaped newline (a continued string) is still a new line.
                if c == '\\' && next != Some('\n') {
                    i += 1;
                } else if c == '"' {
                    state = State::Normal;
                }
            }
            State::RawStr(hashes) => {
                line.code |= !c.is_whitespace();
                if c == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    state = State::Normal;
                    i += hashes;
                }
            }
            State::Normal => {
                if c == '/' && next == Some('/') {
                    state = State::LineComment;
                    i += 1;
                } else if c == '/' && next == Some('*') {
                    state = State::BlockComment(1);
                    i += 1;
                } else {
                    line.code |= !c.is_whitespace();
                    if c == '"' {
                        state = State::Str;
                    } else if let Some((hashes, skip)) = raw_string_start(&chars, i) {
                        state = State::RawStr(hashes);
                        i += skip;
                    } else if c == '\'' {
                        i += char_literal_len(&chars, i);
                    }
                }
            }
        }
        i += 1;
    }
    // A file ending in a newline has no line after it.
    if src.ends_with('\n') {
        lines.pop();
    }
    lines
}

/// At an `r` (or `br`, `cr`) that starts a raw string: the number of `#` and how many chars
/// to skip to reach the opening `"`.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    if chars[i] != 'r' {
        return None;
    }
    let prev_is_ident = |k: usize| chars[k].is_alphanumeric() || chars[k] == '_';
    let starts_token = match i {
        0 => true,
        _ if matches!(chars[i - 1], 'b' | 'c') => i < 2 || !prev_is_ident(i - 2),
        _ => !prev_is_ident(i - 1),
    };
    if !starts_token {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some((hashes, hashes + 1))
}

/// At a `'`: how many more chars a character literal takes (0 for a lifetime or label).
fn char_literal_len(chars: &[char], i: usize) -> usize {
    match (chars.get(i + 1), chars.get(i + 2)) {
        (Some('\\'), _) => {
            // An escape: skip to the closing quote.
            let close = chars[i + 2..]
                .iter()
                .skip(1)
                .position(|&c| c == '\'')
                .map(|p| p + 2);
            close.unwrap_or(0)
        }
        (Some(_), Some('\'')) => 2,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(src: &str) -> Vec<bool> {
        classify(src).iter().map(|l| l.code).collect()
    }

    #[test]
    fn comments_and_blanks_are_not_code() {
        let src = "//! doc\n\nfn a() {} // trailing\n/// doc\n/* block\n still */\nlet x = 1;\n";
        assert_eq!(code(src), [false, false, true, false, false, false, true]);
    }

    #[test]
    fn nested_block_comments_end_at_the_outermost() {
        let src = "/* a /* b */ still comment */ x\n/* a /* b */\n c */\n";
        assert_eq!(code(src), [true, false, false]);
    }

    #[test]
    fn comment_markers_inside_strings_are_code() {
        let src = "let s = \"// not a comment\";\nlet r = r#\"/* \" nor */\"#;\nlet c = '\"';\nx\n";
        assert_eq!(code(src), [true, true, true, true]);
    }

    #[test]
    fn multi_line_strings_are_code_and_end_properly() {
        let src = "let s = \"a\n\n  b\"; // c\n// d\n";
        let lines = classify(src);
        assert_eq!(
            lines.iter().map(|l| l.code).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert_eq!(lines[2].comment.trim(), "c");
    }

    #[test]
    fn continued_strings_keep_the_line_count() {
        let src = "let s = \"a \\\n   b\";\n// c\nx\n";
        assert_eq!(code(src), [true, true, false, true]);
    }

    #[test]
    fn lifetimes_are_not_char_literals() {
        let src = "fn f<'a>(x: &'a str) -> &'a str { x }\n// after\n";
        assert_eq!(code(src), [true, false]);
        let src = "let c = '\\'';\n// after\nlet d = '\\u{1F600}';\n";
        assert_eq!(code(src), [true, false, true]);
    }

    #[test]
    fn identifiers_ending_in_r_do_not_start_raw_strings() {
        let src = "let ptr = br\"x\"; let a = for_r;\n// c\n";
        assert_eq!(code(src), [true, false]);
    }

    #[test]
    fn comment_text_is_kept() {
        let lines = classify("// SAFETY: the fd is ours\nunsafe { f() }\n");
        assert!(lines[0].comment_only());
        assert!(lines[0].comment.contains("SAFETY: the fd is ours"));
        assert!(!lines[1].comment_only());
    }
}
