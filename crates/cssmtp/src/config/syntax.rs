//! CSSMTP's configuration syntax: statements, without meaning.
//!
//! ```text
//! ExtWrtName  MAILFWD1          # Keyword value
//! TargetServer                  # Keyword, then a block
//! {
//!   TargetIp   192.0.2.25
//!   Secure     Yes
//! }
//! ```
//!
//! Keywords are matched case-insensitively later; here they keep their spelling. `#`
//! and `;` start a comment (IBM's comment syntax was not found; both are accepted).
//! Values may be double-quoted to hold blanks. Braces may stand on their own lines (the
//! IBM form) or follow the keyword (`Header {`). Every problem is collected with its line.

/// One word of a statement or parameter, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub line: u32,
}

/// A parameter inside a block: `Keyword value…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub keyword: Word,
    pub values: Vec<Word>,
}

/// A top-level statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub keyword: Word,
    /// Values on the statement's own line (`ExtWrtName CSSMTP`).
    pub values: Vec<Word>,
    /// The block's parameters, when the statement has a block.
    pub block: Option<Vec<Param>>,
}

/// A syntax problem at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxProblem {
    pub line: u32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
    Newline,
}

fn tokenize(text: &str, problems: &mut Vec<SyntaxProblem>) -> Vec<(u32, Token)> {
    let mut tokens = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let mut chars = raw_line.chars().peekable();
        let mut word = String::new();
        let flush = |word: &mut String, tokens: &mut Vec<(u32, Token)>| {
            if !word.is_empty() {
                tokens.push((line, Token::Word(std::mem::take(word))));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '#' | ';' => break,
                '{' => {
                    flush(&mut word, &mut tokens);
                    tokens.push((line, Token::Open));
                }
                '}' => {
                    flush(&mut word, &mut tokens);
                    tokens.push((line, Token::Close));
                }
                '"' => {
                    let mut closed = false;
                    for q in chars.by_ref() {
                        if q == '"' {
                            closed = true;
                            break;
                        }
                        word.push(q);
                    }
                    if !closed {
                        problems.push(SyntaxProblem {
                            line,
                            message: "unterminated quoted value".into(),
                        });
                    }
                    // An empty quoted value is still a value.
                    tokens.push((line, Token::Word(std::mem::take(&mut word))));
                }
                c if c.is_whitespace() => flush(&mut word, &mut tokens),
                c if c.is_control() => problems.push(SyntaxProblem {
                    line,
                    message: format!("control character U+{:04X} in the file", u32::from(c)),
                }),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut tokens);
        tokens.push((line, Token::Newline));
    }
    tokens
}

/// Parses a configuration file's text into statements. Problems do not stop the parse:
/// everything that can be read is returned along with every problem found.
pub fn parse(text: &str) -> (Vec<Statement>, Vec<SyntaxProblem>) {
    let mut problems = Vec::new();
    let tokens = tokenize(text, &mut problems);
    let mut statements = Vec::new();
    let mut i = 0;
    let next_significant = |from: usize| {
        tokens
            .iter()
            .skip(from)
            .position(|(_, t)| *t != Token::Newline)
            .map(|p| p + from)
    };
    while let Some(start) = next_significant(i) {
        let Some((line, token)) = tokens.get(start) else {
            break;
        };
        i = start + 1;
        match token {
            Token::Open => problems.push(SyntaxProblem {
                line: *line,
                message: "'{' without a statement keyword before it".into(),
            }),
            Token::Close => problems.push(SyntaxProblem {
                line: *line,
                message: "'}' without an open block".into(),
            }),
            Token::Newline => {}
            Token::Word(keyword) => {
                let keyword = Word {
                    text: keyword.clone(),
                    line: *line,
                };
                let values = words(&tokens, &mut i);
                // A block opens on the same line or, when the keyword stands alone, on
                // a following line.
                let open_at = match tokens.get(i) {
                    Some((_, Token::Open)) => Some(i),
                    Some((_, Token::Newline)) if values.is_empty() => next_significant(i)
                        .filter(|&j| matches!(tokens.get(j), Some((_, Token::Open)))),
                    _ => None,
                };
                let block = match open_at {
                    Some(j) => {
                        let (params, after) = parse_block(&tokens, j + 1, &keyword, &mut problems);
                        i = after;
                        Some(params)
                    }
                    None => None,
                };
                if block.is_some() && !values.is_empty() {
                    problems.push(SyntaxProblem {
                        line: keyword.line,
                        message: format!("statement {} has both values and a block", keyword.text),
                    });
                }
                statements.push(Statement {
                    keyword,
                    values,
                    block,
                });
            }
        }
    }
    (statements, problems)
}

/// The words from `tokens[*i]` up to the end of the line (or a brace); advances `i`.
fn words(tokens: &[(u32, Token)], i: &mut usize) -> Vec<Word> {
    let mut values = Vec::new();
    while let Some((line, Token::Word(text))) = tokens.get(*i) {
        values.push(Word {
            text: text.clone(),
            line: *line,
        });
        *i += 1;
    }
    values
}

fn parse_block(
    tokens: &[(u32, Token)],
    mut i: usize,
    owner: &Word,
    problems: &mut Vec<SyntaxProblem>,
) -> (Vec<Param>, usize) {
    let mut params = Vec::new();
    loop {
        match tokens.get(i) {
            None => {
                problems.push(SyntaxProblem {
                    line: owner.line,
                    message: format!("block of {} is not closed with '}}'", owner.text),
                });
                return (params, i);
            }
            Some((_, Token::Newline)) => i += 1,
            Some((_, Token::Close)) => return (params, i + 1),
            Some((line, Token::Open)) => {
                problems.push(SyntaxProblem {
                    line: *line,
                    message: format!("unexpected '{{' inside the block of {}", owner.text),
                });
                i += 1;
            }
            Some((line, Token::Word(keyword))) => {
                let keyword = Word {
                    text: keyword.clone(),
                    line: *line,
                };
                i += 1;
                let values = words(tokens, &mut i);
                params.push(Param { keyword, values });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_blocks_and_comments() {
        let text = "# comment\nExtWrtName  MAILFWD1   ; trailing\nHeader\n{\n  Date NO\n  UserInfo YES\n}\nTimeout {\n AnyCmd 60 }\nSpoolDirectory \"/var/spool/my mail\"\n";
        let (statements, problems) = parse(text);
        assert_eq!(problems, vec![]);
        assert_eq!(statements.len(), 4);
        assert_eq!(statements[0].keyword.text, "ExtWrtName");
        assert_eq!(statements[0].values[0].text, "MAILFWD1");
        let header = statements[1].block.as_ref().unwrap();
        assert_eq!(header.len(), 2);
        assert_eq!(header[1].keyword.line, 6);
        assert_eq!(
            statements[2].block.as_ref().unwrap()[0].values[0].text,
            "60"
        );
        assert_eq!(statements[3].values[0].text, "/var/spool/my mail");
    }

    #[test]
    fn problems_are_collected_with_lines() {
        let (_, problems) = parse("}\nTargetServer\n{\n TargetIp 1.2.3.4\n{\n");
        let lines: Vec<u32> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![1, 5, 2]);
    }
}
