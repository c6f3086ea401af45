//! A board's console as the harness reads it: whole lines only, each stamped with when the
//! harness first saw it. QEMU appends the semihosting output to a file while the harness reads
//! it, so a read can end in the middle of a line; that piece waits for its '\n' and is never
//! handed out (a half-read "agent: inferences 2" of 270 would read as a count going back).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes in, complete lines out; the piece after the last '\n' is kept for the next push.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// The lines `bytes` completes, without their '\n' (nor a '\r' before it).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            if self.partial.last() == Some(&b'\r') {
                self.partial.pop();
            }
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        lines
    }

    /// Drops the unfinished line, which will never end (its emulator was killed), so the next
    /// boot's first line does not glue onto it; returns what it held, if anything.
    pub fn cut(&mut self) -> Option<String> {
        let piece =
            (!self.partial.is_empty()).then(|| String::from_utf8_lossy(&self.partial).into_owned());
        self.partial.clear();
        piece
    }
}

/// A whole console line and when the harness first read it.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub at: Instant,
    pub text: String,
}

/// The lines of one console file read so far.
#[derive(Debug)]
pub struct Console {
    path: PathBuf,
    read: u64,
    splitter: LineSplitter,
    lines: Vec<Stamped>,
    /// Lines a power cut ended before their '\n'.
    pub cut_lines: Vec<String>,
}

impl Console {
    pub fn new(path: &Path) -> Console {
        Console {
            path: path.to_owned(),
            read: 0,
            splitter: LineSplitter::default(),
            lines: Vec::new(),
            cut_lines: Vec::new(),
        }
    }

    /// Reads what was appended since the last look.
    pub fn refresh(&mut self) {
        let Ok(mut file) = File::open(&self.path) else {
            return;
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.read)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return;
        }
        self.read += bytes.len() as u64;
        let at = Instant::now();
        self.lines.extend(
            self.splitter
                .push(&bytes)
                .into_iter()
                .map(|text| Stamped { at, text }),
        );
    }

    /// After the emulator is gone: reads its last bytes and drops an unfinished line.
    pub fn power_cut(&mut self) {
        self.refresh();
        if let Some(piece) = self.splitter.cut() {
            self.cut_lines.push(piece);
        }
    }

    pub fn lines(&self) -> &[Stamped] {
        &self.lines
    }
}

/// How often a running board's console is read: the resolution of the lines' stamps.
const TAIL_EVERY: Duration = Duration::from_millis(50);

/// Reads a console in the background while its board runs, so that each line's stamp is
/// within `TAIL_EVERY` of when it was printed whether or not a scenario looks at it then.
#[derive(Debug)]
pub struct Tail {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub fn lock(console: &Mutex<Console>) -> std::sync::MutexGuard<'_, Console> {
    console.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Tail {
    pub fn start(console: Arc<Mutex<Console>>) -> Tail {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                lock(&console).refresh();
                std::thread::sleep(TAIL_EVERY);
            }
        });
        Tail {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_split_across_reads_comes_out_once_whole() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"agent: inferences 2"), Vec::<String>::new());
        assert_eq!(
            s.push(b"70\nagent: validating, inf"),
            vec!["agent: inferences 270".to_owned()]
        );
        assert_eq!(
            s.push(b"erences 275\r\n\nboot: x\n"),
            vec![
                "agent: validating, inferences 275".to_owned(),
                String::new(),
                "boot: x".to_owned()
            ]
        );
        assert_eq!(s.push(b""), Vec::<String>::new());
        assert_eq!(s.cut(), None);
    }

    #[test]
    fn a_line_cut_by_a_power_cut_is_dropped_not_glued_to_the_next_boot() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"agent: infer"), Vec::<String>::new());
        assert_eq!(s.cut(), Some("agent: infer".to_owned()));
        assert_eq!(
            s.push(b"boot: confirmed 1.0.0\n"),
            vec!["boot: confirmed 1.0.0".to_owned()]
        );
    }

    #[test]
    fn a_half_written_file_yields_only_its_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, b"agent: inferences 260\nagent: inferences 2").unwrap();
        let mut c = Console::new(&path);
        c.refresh();
        let texts = |c: &Console| c.lines().iter().map(|l| l.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&c), ["agent: inferences 260"]);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"70\nagent: up").unwrap();
        c.refresh();
        assert_eq!(
            texts(&c),
            ["agent: inferences 260", "agent: inferences 270"]
        );
        c.power_cut();
        std::io::Write::write_all(&mut f, b"boot: confirmed\n").unwrap();
        c.refresh();
        assert_eq!(
            texts(&c),
            [
                "agent: inferences 260",
                "agent: inferences 270",
                "boot: confirmed"
            ]
        );
        assert_eq!(c.cut_lines, ["agent: up"]);
    }
}
