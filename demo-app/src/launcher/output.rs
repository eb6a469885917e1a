//! The children's output, copied into the launcher's line by line with a label in front, so a
//! person can tell who said what.

use std::{
    io::{BufRead as _, BufReader, Read},
    thread,
};

/// Copies `output` on a thread of its own, each line prefixed with `[label]`, to the
/// launcher's stderr or stdout.
pub(super) fn prefix_lines(label: String, output: impl Read + Send + 'static, to_stderr: bool) {
    thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if to_stderr {
                eprintln!("[{label}] {line}");
            } else {
                println!("[{label}] {line}");
            }
        }
    });
}
