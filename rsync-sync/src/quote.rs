//! POSIX shell quoting: every argument of a remote command becomes one word that a
//! POSIX shell (sh, dash, bash, zsh) reads back verbatim.
//!
//! SSH runs a remote command as one string through the remote user's login shell, so the
//! argument vector has to be turned into a command line. Words made only of characters no
//! shell treats specially are left as they are (readable logs); everything else is wrapped
//! in single quotes, inside which nothing is special, and a single quote itself is written
//! as `'\''` (close, escaped quote, reopen). A NUL byte cannot travel in a command line at
//! all and is refused.

use std::borrow::Cow;

use thiserror::Error;

/// Why an argument vector cannot become a command line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuoteError {
    /// A NUL byte would truncate the command line on the remote side.
    #[error("argument {index} ({shown:?}) contains a NUL byte, which no command line can carry")]
    Nul {
        /// Position of the argument in the vector.
        index: usize,
        /// The argument with the NUL shown escaped.
        shown: String,
    },
    /// There is nothing to run.
    #[error("empty command")]
    Empty,
}

/// True for characters that no POSIX shell expands or splits on, anywhere in a word.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '+' | '@' | '%' | '=')
}

/// Quotes one argument so that a POSIX shell reads it back as exactly one word equal to it.
///
/// Plain words (letters, digits, `_-./,:+@%=`, not starting with `=` which zsh expands) are
/// returned unchanged; the empty string becomes `''`. The caller must have rejected NUL bytes
/// (see [`command_line`]); a NUL here is quoted like any other byte.
pub fn quote(arg: &str) -> Cow<'_, str> {
    if !arg.is_empty() && !arg.starts_with('=') && arg.chars().all(is_plain) {
        return Cow::Borrowed(arg);
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// Builds a command line from an argument vector, quoting every argument (including the
/// program name) with [`quote`] and joining them with single spaces.
pub fn command_line<S: AsRef<str>>(args: &[S]) -> Result<String, QuoteError> {
    if args.is_empty() {
        return Err(QuoteError::Empty);
    }
    let mut line = String::new();
    for (index, arg) in args.iter().enumerate() {
        let arg = arg.as_ref();
        if arg.contains('\0') {
            return Err(QuoteError::Nul {
                index,
                shown: arg.escape_debug().to_string(),
            });
        }
        if index > 0 {
            line.push(' ');
        }
        line.push_str(&quote(arg));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(quote("rsync"), "rsync");
        assert_eq!(quote("--info=progress2"), "--info=progress2");
        assert_eq!(
            quote("root@10.0.0.2:/srv/data/"),
            "root@10.0.0.2:/srv/data/"
        );
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("~root"), "'~root'");
        assert_eq!(quote("=cmd"), "'=cmd'");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(quote("*"), "'*'");
    }

    #[test]
    fn command_line_quotes_every_argument() {
        let line = command_line(&["rsync", "-e", "ssh -i /k", "a;b"]).unwrap();
        assert_eq!(line, "rsync -e 'ssh -i /k' 'a;b'");
    }

    #[test]
    fn command_line_refuses_nul_and_empty() {
        assert_eq!(
            command_line(&["echo", "a\0b"]),
            Err(QuoteError::Nul {
                index: 1,
                shown: "a\\0b".into()
            })
        );
        assert_eq!(command_line::<&str>(&[]), Err(QuoteError::Empty));
    }

    /// Runs `printf '%s\0' ARGS...` through `sh -c` and splits what it prints.
    fn through_sh(args: &[String]) -> Vec<String> {
        let mut argv = vec!["printf".to_owned(), "%s\\0".to_owned()];
        argv.extend(args.iter().cloned());
        let line = command_line(&argv).unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sh failed on {line:?}: {:?}",
            out.stderr
        );
        let mut words: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|w| String::from_utf8(w.to_vec()).unwrap())
            .collect();
        // printf terminates every word with NUL, so the split leaves one empty tail.
        assert_eq!(words.pop().as_deref(), Some(""));
        words
    }

    #[test]
    fn hostile_strings_survive_sh() {
        let args: Vec<String> = [
            "", " ", "'", "''", "\"", "\\", "$HOME", "`id`", "$(id)", "a'b\"c", "*", "?", "[a]",
            "{a,b}", "~", "-n", "--", "!", "#c", ";", "&", "|", "<", ">", "\t", "\n", "é ü",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(through_sh(&args), args);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_strings_round_trip_through_sh(
            args in proptest::collection::vec("[^\\x00]{0,12}", 1..6)
        ) {
            prop_assert_eq!(through_sh(&args), args);
        }

        #[test]
        fn any_ascii_bytes_round_trip_through_sh(
            args in proptest::collection::vec("[\\x01-\\x7f]{0,16}", 1..6)
        ) {
            prop_assert_eq!(through_sh(&args), args);
        }
    }
}
