//! What `efea predict PATH...` reads: image files, folders searched recursively for images,
//! and `-` for standard input.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{InferError, Result};

/// File extensions taken from folders (case-insensitive). A file named on the command line is
/// read whatever its name, so a mislabelled file gets an error instead of being skipped.
pub use crate::decode::IMAGE_EXTENSIONS;

/// One input image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`), read once.
    Stdin,
    File(PathBuf),
}

impl Input {
    /// How the input is named in results: its path, or `-`.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".into(),
            Input::File(path) => path.display().to_string(),
        }
    }
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The images named by `paths`, in order: files as given, folders expanded to their images
/// (sorted by path, recursively, symbolic links to folders not followed), `-` as stdin.
/// A path that does not exist is kept, so that its error is reported with the other results.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            inputs.push(Input::Stdin);
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            inputs.extend(found.into_iter().map(Input::File));
        } else {
            inputs.push(Input::File(path.clone()));
        }
    }
    Ok(inputs)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| InferError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| InferError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| InferError::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, found)?;
        } else if is_image_path(&path) && (kind.is_file() || path.is_file()) {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_searched_recursively_for_images_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        for name in [
            "x.JPG",
            "a/y.png",
            "a/b/z.webp",
            "a/notes.txt",
            "a/b/w.tiff",
        ] {
            fs::write(root.join(name), b"").unwrap();
        }
        let inputs = collect(&[root.to_path_buf(), "-".into(), root.join("a/notes.txt")]).unwrap();
        let names: Vec<String> = inputs
            .iter()
            .map(|i| match i {
                Input::File(p) => p.strip_prefix(root).unwrap_or(p).display().to_string(),
                Input::Stdin => "-".into(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "a/b/w.tiff",
                "a/b/z.webp",
                "a/y.png",
                "x.JPG",
                "-",
                "a/notes.txt"
            ]
        );
    }
}
