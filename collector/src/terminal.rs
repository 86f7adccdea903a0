//! Terminal facts (is it a terminal, how wide, may we use colour) and the few ANSI escapes the
//! live view needs. Plain escapes, no terminal library: the view only moves the cursor home,
//! clears to the end of lines and of the screen, and colours a few words. And writing
//! leakscope's own output to stdout and stderr.

use std::io::Write;

pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor; any value is safe to pass.
    unsafe { libc::isatty(fd) == 1 }
}

pub fn stdout_is_tty() -> bool {
    is_tty(libc::STDOUT_FILENO)
}

pub fn stderr_is_tty() -> bool {
    is_tty(libc::STDERR_FILENO)
}

pub fn stdin_is_tty() -> bool {
    is_tty(libc::STDIN_FILENO)
}

/// (columns, rows) of the terminal on `fd`, with sane fallbacks.
pub fn size(fd: i32) -> (usize, usize) {
    // SAFETY: `ws` is plain data; TIOCGWINSZ writes a winsize into it or fails without writing.
    let ws = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) != 0 {
            return (100, 40);
        }
        ws
    };
    let cols = if ws.ws_col == 0 { 100 } else { ws.ws_col as usize };
    let rows = if ws.ws_row == 0 { 40 } else { ws.ws_row as usize };
    (cols.max(40), rows.max(10))
}

/// Colour unless NO_COLOR is set (https://no-color.org) or TERM is dumb.
pub fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bold,
    Dim,
    Red,
    Yellow,
    Green,
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Red => "1;31",
            Style::Yellow => "33",
            Style::Green => "32",
            Style::Cyan => "36",
        }
    }
}

/// Wraps text in a style when colour is on.
pub fn paint(text: &str, style: Style, colour: bool) -> String {
    if colour { format!("\x1b[{}m{text}\x1b[0m", style.code()) } else { text.to_string() }
}

/// Number of visible characters, not counting ANSI escape sequences.
pub fn visible_width(s: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in s.chars() {
        if in_escape {
            if c.is_ascii_alphabetic() {
                in_escape = false;
            }
        } else if c == '\x1b' {
            in_escape = true;
        } else {
            width += 1;
        }
    }
    width
}

/// Cuts a line to `max` visible characters (escape sequences kept, colour reset if cut).
pub fn truncate_visible(s: &str, max: usize) -> String {
    if visible_width(s) <= max {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut width = 0;
    let mut in_escape = false;
    let mut had_escape = false;
    for c in s.chars() {
        if in_escape {
            out.push(c);
            if c.is_ascii_alphabetic() {
                in_escape = false;
            }
            continue;
        }
        if c == '\x1b' {
            in_escape = true;
            had_escape = true;
            out.push(c);
            continue;
        }
        if width + 1 >= max {
            out.push('…');
            break;
        }
        out.push(c);
        width += 1;
    }
    if had_escape {
        out.push_str("\x1b[0m");
    }
    out
}

/// Pads to `width` visible characters on the left (numbers) or right (text).
pub fn pad_left(s: &str, width: usize) -> String {
    let w = visible_width(s);
    if w >= width { s.to_string() } else { format!("{}{s}", " ".repeat(width - w)) }
}

pub fn pad_right(s: &str, width: usize) -> String {
    let w = visible_width(s);
    if w >= width { s.to_string() } else { format!("{s}{}", " ".repeat(width - w)) }
}

/// Full-screen drawing on the alternate screen, restored on drop (also on early return).
pub struct Screen {
    out: std::io::Stderr,
    active: bool,
}

impl Screen {
    pub fn enter() -> Screen {
        let mut out = std::io::stderr();
        // Alternate screen, cursor hidden: the user's scrollback stays untouched.
        let _ = out.write_all(b"\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
        let _ = out.flush();
        Screen { out, active: true }
    }

    /// Redraws in place: home, each line cleared to its end, then the rest of the screen.
    pub fn draw(&mut self, lines: &[String]) {
        let mut frame = String::with_capacity(lines.len() * 100);
        frame.push_str("\x1b[H");
        for line in lines {
            frame.push_str(line);
            frame.push_str("\x1b[K\r\n");
        }
        frame.push_str("\x1b[J");
        let _ = self.out.write_all(frame.as_bytes());
        let _ = self.out.flush();
    }

    pub fn leave(&mut self) {
        if self.active {
            let _ = self.out.write_all(b"\x1b[?25h\x1b[?1049l");
            let _ = self.out.flush();
            self.active = false;
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Writes to stdout, ignoring a closed pipe (`leakscope report x | head`).
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes to stderr (leakscope's own messages while a target owns stdout).
pub fn print_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_ignore_escapes_and_truncation_keeps_them_balanced() {
        let s = paint("hello", Style::Red, true);
        assert_eq!(visible_width(&s), 5);
        let cut = truncate_visible(&format!("{s} world"), 4);
        assert_eq!(visible_width(&cut), 4);
        assert!(cut.ends_with("\x1b[0m"));
        assert_eq!(truncate_visible("abcdef", 10), "abcdef");
        assert_eq!(truncate_visible("abcdef", 4), "abc…");
        assert_eq!(pad_left("7", 3), "  7");
        assert_eq!(pad_right(&paint("ab", Style::Bold, true), 4).len(), "\x1b[1mab\x1b[0m  ".len());
    }
}
