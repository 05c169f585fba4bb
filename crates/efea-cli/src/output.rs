//! Pictures the commands write: encoded in memory in the format the path names, then written
//! atomically, so that an interrupted run never leaves half a file under a good name.

use std::io::Cursor;
use std::path::Path;

use anyhow::Context;
use image::{DynamicImage, ImageFormat};

/// Writes `image` to `path` (PNG, JPEG, ... by its extension) atomically.
pub fn save_image(image: impl Into<DynamicImage>, path: &Path) -> anyhow::Result<()> {
    let format = ImageFormat::from_path(path).with_context(|| {
        format!(
            "{}: expected a picture's extension (.png, .jpg)",
            path.display()
        )
    })?;
    let image: DynamicImage = image.into();
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    efea_model::checkpoint::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
