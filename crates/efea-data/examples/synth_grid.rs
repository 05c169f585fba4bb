//! Draws a labelled grid of synthetic faces (no augmentation) and times the full generator.
//!
//! `cargo run -p efea-data --example synth_grid -- OUT.png [easy|medium|hard] [PER_CLASS] [COUNT]`

use std::time::Instant;

use efea_data::preview::{PreviewOptions, preview_grid};
use efea_data::synth::{SynthConfig, generate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).map_or("synth_grid.png", String::as_str);
    let level = args.get(2).map_or("medium", String::as_str).parse()?;
    let per_class: usize = args.get(3).map_or(Ok(10), |s| s.parse())?;
    let count: usize = args.get(4).map_or(Ok(700), |s| s.parse())?;
    let config = SynthConfig {
        level,
        ..SynthConfig::new(count)
    };
    let start = Instant::now();
    let dataset = generate(&config)?;
    println!(
        "{count} faces ({level}) in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let grid = preview_grid(
        &dataset,
        &PreviewOptions {
            per_class,
            scale: 2,
            augment: None,
            ..Default::default()
        },
    )?;
    grid.save(out)?;
    Ok(())
}
