//! The children's output, copied into the launcher's line by line with a label in front, so a
//! person can tell who said what.

use std::{
    io::{BufRead as _, BufReader, Read, Write as _},
    thread,
};

/// Copies `output` on a thread of its own, each line prefixed with `[label]`, to the
/// launcher's stderr or stdout. Each line goes out in one write: stderr is unbuffered, and
/// `eprintln!` writes its pieces one by one, so another writer's line could land inside it.
pub(super) fn prefix_lines(label: String, output: impl Read + Send + 'static, to_stderr: bool) {
    thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            let line = format!("[{label}] {line}\n");
            // A failed write (a closed terminal) drops the line, where println! would panic.
            let _ = if to_stderr {
                std::io::stderr().write_all(line.as_bytes())
            } else {
                std::io::stdout().lock().write_all(line.as_bytes())
            };
        }
    });
}
