//! Shared by the integration tests: FFmpeg (required, never skipped), predictors, and the
//! identity bookkeeping of generated scenes.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::process::Command;

use burn::tensor::Device;
use efea_infer::{Predictor, PredictorConfig};
use efea_video::scene::{Scene, matches};
use efea_video::{Analysis, Tools};

/// FFmpeg as the tests use it. Panics (fails the test, never skips it) when it is missing.
pub fn tools() -> Tools {
    let tools = Tools::from_env();
    for program in [&tools.ffmpeg, &tools.ffprobe] {
        let found = Command::new(program)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the video tests need FFmpeg: `{}` did not run; install it (apt-get install ffmpeg; \
             .ci/run does) or point EFEA_FFMPEG / EFEA_FFPROBE at it",
            program.display()
        );
    }
    tools
}

/// The bundled model with its MTCNN detector (boxes and landmarks): for tracking, where the
/// labels do not matter.
pub fn bundled() -> Predictor {
    Predictor::bundled(&Device::flex(), PredictorConfig::default())
}

/// How one actor of a scene was tracked over the analysed frames.
#[derive(Debug, Default, Clone)]
pub struct Followed {
    /// Analysed frames where the face was visible.
    pub visible: usize,
    /// ... and found (a detection matched its square).
    pub found: usize,
    /// Track id of each analysed frame where it was found: (frame index, id).
    pub ids: Vec<(u64, u32)>,
}

impl Followed {
    /// The track it was found in most often.
    pub fn main_id(&self) -> Option<u32> {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for (_, id) in &self.ids {
            *counts.entry(*id).or_default() += 1;
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id)
    }

    /// Fraction of the frames where it was visible and found that carry its main id.
    pub fn kept(&self) -> f64 {
        let main = self.main_id();
        let same = self.ids.iter().filter(|(_, id)| Some(*id) == main).count();
        same as f64 / self.ids.len().max(1) as f64
    }

    pub fn recall(&self) -> f64 {
        self.found as f64 / self.visible.max(1) as f64
    }

    /// The ids before and after `frame`.
    pub fn ids_around(&self, frame: u64) -> (Vec<u32>, Vec<u32>) {
        let (before, after): (Vec<_>, Vec<_>) = self.ids.iter().partition(|(f, _)| *f < frame);
        (
            before.into_iter().map(|(_, id)| id).collect(),
            after.into_iter().map(|(_, id)| id).collect(),
        )
    }
}

/// For each actor of `scene`, how the analysis followed it (only visible frames count).
pub fn followed(scene: &Scene, analysis: &Analysis) -> Vec<Followed> {
    let mut per_actor = vec![Followed::default(); scene.actors.len()];
    let mut by_frame: HashMap<u64, Vec<&efea_video::Observation>> = HashMap::new();
    for track in &analysis.tracks {
        for o in &track.observations {
            by_frame.entry(o.frame).or_default().push(o);
        }
    }
    let analysed: Vec<u64> = {
        let mut frames: Vec<u64> = (0..scene.frames())
            .filter(|f| match analysis.sampling {
                efea_video::Sampling::Every(n) => f % u64::from(n) == 0,
                efea_video::Sampling::Fps(_) => by_frame.contains_key(f),
            })
            .collect();
        frames.sort();
        frames
    };
    for frame in analysed {
        let observations = by_frame.get(&frame).cloned().unwrap_or_default();
        for truth in scene.truth(frame) {
            if !truth.visible {
                continue;
            }
            let actor = &mut per_actor[truth.actor];
            actor.visible += 1;
            if let Some(o) = observations.iter().find(|o| matches(o.bbox, truth.square)) {
                actor.found += 1;
                actor.ids.push((frame, o.track));
            }
        }
    }
    per_actor
}
