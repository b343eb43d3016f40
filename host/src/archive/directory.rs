//! Segments as files in a directory: `NAME` holds the segment, `NAME.sha256` its digest. A
//! segment is written to `NAME.part`, synced, then renamed into place after its digest: a
//! reader never sees half a segment, and a crash leaves at most a `.part` file, which the
//! next write of that name replaces.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{ArchiveError, SegmentSink, SegmentStore};

/// A directory of segment files.
#[derive(Debug, Clone)]
pub struct Directory {
    dir: PathBuf,
}

impl Directory {
    /// The archive in `dir`, made if missing.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] when the directory cannot be made.
    pub fn open(dir: &Path) -> Result<Self, ArchiveError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> Result<PathBuf, ArchiveError> {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain {
            return Err(ArchiveError::Corrupt {
                segment: name.to_owned(),
                message: "a segment name is letters, digits, `-` and `_`".into(),
            });
        }
        Ok(self.dir.join(name))
    }
}

fn io_error(path: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl SegmentStore for Directory {
    fn create(&self, name: &str) -> Result<Box<dyn SegmentSink>, ArchiveError> {
        let path = self.path(name)?;
        let part = path.with_extension("part");
        let file = File::create(&part).map_err(|e| io_error(&part, e))?;
        Ok(Box::new(FileSink {
            file: Some(BufWriter::new(file)),
            part,
            path,
        }))
    }

    fn list(&self) -> Result<Vec<String>, ArchiveError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.path(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, ArchiveError> {
        let path = self.path(name)?;
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        Ok(Box::new(io::BufReader::new(file)))
    }

    fn digest(&self, name: &str) -> Result<String, ArchiveError> {
        let path = self.path(name)?.with_extension("sha256");
        let text = fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        Ok(text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned())
    }
}

/// A segment being written to its `.part` file.
struct FileSink {
    file: Option<BufWriter<File>>,
    part: PathBuf,
    path: PathBuf,
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the segment is finished"))?
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl SegmentSink for FileSink {
    fn finish(mut self: Box<Self>, digest: &str) -> Result<(), ArchiveError> {
        let file = self.file.take().expect("finished once");
        let file = file
            .into_inner()
            .map_err(|e| io_error(&self.part, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(&self.part, e))?;
        let sidecar = self.path.with_extension("sha256");
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut side = File::create(&sidecar).map_err(|e| io_error(&sidecar, e))?;
        writeln!(side, "{digest}  {name}").map_err(|e| io_error(&sidecar, e))?;
        side.sync_all().map_err(|e| io_error(&sidecar, e))?;
        fs::rename(&self.part, &self.path).map_err(|e| io_error(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(dir, e))?;
        }
        Ok(())
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Never finished: the half-written segment goes.
            let _ = fs::remove_file(&self.part);
        }
    }
}
