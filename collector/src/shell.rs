//! Quoting for the shell lines leakscope prints for the user to paste (`env` exports, hints
//! that name a socket or a directory).

/// Quotes a value for a POSIX shell when needed: single quotes, in which every character but
/// the quote itself is literal (newlines too), and a quote written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=+,@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_only_when_needed() {
        assert_eq!(shell_quote("/usr/lib/x.so"), "/usr/lib/x.so");
        assert_eq!(shell_quote("{E3F8}"), "'{E3F8}'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
