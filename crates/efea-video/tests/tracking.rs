//! Generated clips (synthetic faces moving over a textured background, encoded by ffmpeg):
//! faces keep their track through a crossing and when they leave and come back.

mod common;

use efea_video::scene::{Actor, Scene};
use efea_video::{NoSink, Sampling, VideoConfig, analyse, probe};

fn analysed(scene: &Scene, name: &str, sampling: Sampling) -> efea_video::Analysis {
    let tools = common::tools();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    scene.encode(&path, &tools, false).unwrap();
    let info = probe(&path, &tools).unwrap();
    let config = VideoConfig {
        sampling,
        tools,
        ..VideoConfig::default()
    };
    let analysis = analyse(&common::bundled(), &info, &config, &mut NoSink).unwrap();
    assert!(analysis.stopped.is_none(), "{:?}", analysis.stopped);
    analysis
}

/// Two faces crossing: the one in front hides half of the other at the crossing (t = 2 s).
#[test]
fn crossing_faces_keep_their_tracks() {
    let scene = Scene {
        width: 400,
        height: 240,
        fps: 30,
        seconds: 4.0,
        side: 80,
        seed: 5,
        actors: vec![
            Actor::straight(1, vec![3, 5], (10.0, 40.0), (75.0, 0.0)),
            Actor::straight(2, vec![0, 6], (310.0, 80.0), (-75.0, 0.0)),
        ],
    };
    let analysis = analysed(&scene, "crossing.mp4", Sampling::Every(2));
    let followed = common::followed(&scene, &analysis);
    for (actor, f) in followed.iter().enumerate() {
        eprintln!(
            "actor {actor}: visible {} found {} main id {:?} kept {:.3} ids {:?}",
            f.visible,
            f.found,
            f.main_id(),
            f.kept(),
            f.ids
        );
    }
    eprintln!("{} tracks", analysis.tracks.len());
    let ids: Vec<Option<u32>> = followed.iter().map(|f| f.main_id()).collect();
    assert!(
        ids[0].is_some() && ids[1].is_some() && ids[0] != ids[1],
        "{ids:?}"
    );
    for f in &followed {
        assert!(f.recall() >= 0.9, "recall {:.2}", f.recall());
        assert!(
            f.kept() >= 0.95,
            "identity kept on {:.3} of frames",
            f.kept()
        );
        // No switch at the crossing: the same single id before and after it.
        let (before, after) = f.ids_around(60);
        assert!(
            before
                .iter()
                .chain(&after)
                .all(|id| Some(*id) == f.main_id())
        );
    }
}

/// A face that walks out of the frame and comes back a second later gets its track back
/// (recognised by its look); a face that stays put keeps its own all along.
#[test]
fn a_face_that_leaves_and_comes_back_keeps_its_track() {
    let scene = Scene {
        width: 400,
        height: 240,
        fps: 30,
        seconds: 5.0,
        side: 80,
        seed: 6,
        actors: vec![
            Actor::straight(3, vec![1, 4], (160.0, 155.0), (0.0, 0.0)),
            Actor {
                legs: vec![
                    (0.0, 40.0, 30.0, 150.0, 0.0),
                    (3.0, 400.0, 30.0, -150.0, 0.0),
                ],
                ..Actor::straight(4, vec![3, 5], (0.0, 0.0), (0.0, 0.0))
            },
        ],
    };
    let analysis = analysed(&scene, "return.mkv", Sampling::Fps(15.0));
    let followed = common::followed(&scene, &analysis);
    for (actor, f) in followed.iter().enumerate() {
        eprintln!(
            "actor {actor}: visible {} found {} main id {:?} kept {:.3} ids {:?}",
            f.visible,
            f.found,
            f.main_id(),
            f.kept(),
            f.ids
        );
    }
    let walker = &followed[1];
    // Out of the frame from 2.1 s to 3.5 s.
    let (before, after) = walker.ids_around(75);
    assert!(!before.is_empty() && !after.is_empty(), "{walker:?}");
    for f in &followed {
        assert!(f.recall() >= 0.9, "recall {:.2}", f.recall());
        assert!(
            f.kept() >= 0.95,
            "identity kept on {:.3} of frames",
            f.kept()
        );
    }
    assert_ne!(followed[0].main_id(), walker.main_id());
}
