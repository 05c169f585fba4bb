//! A real photograph: the group photo shipped inside the rustface crate (committed in
//! `tests/fixtures/photos/`). Its faces are small, gray and in rows: what users of expression
//! recognition point it at.

mod common;

use efea_infer::{PredictorConfig, draw};

fn photo_bytes() -> Vec<u8> {
    std::fs::read(common::group_photo()).expect("reading the committed group photo")
}

#[test]
fn the_group_photo_gives_many_faces_with_sane_answers() {
    let bytes = photo_bytes();
    let predictor = common::predictor(PredictorConfig::default());
    let analysed = predictor.predict_bytes(&bytes).unwrap();
    let prediction = &analysed.prediction;
    assert_eq!((prediction.width, prediction.height), (1666, 1136));
    // The photo shows 29 people; the picture's own red boxes (rustface's demo output) mark
    // the faces SeetaFace finds with these settings.
    let faces = &prediction.faces;
    assert!((24..=34).contains(&faces.len()), "{} faces", faces.len());
    for face in faces {
        let b = face.bbox;
        assert!(b.x >= 0 && b.y >= 0, "{b:?}");
        assert!(
            b.x as u32 + b.width <= 1666 && b.y as u32 + b.height <= 1136,
            "{b:?}"
        );
        // Faces are in the upper part of the picture, 30 to 80 pixels wide.
        assert!(b.y < 450 && (25..=90).contains(&b.width), "{b:?}");
        let sum: f32 = face.probabilities.iter().map(|(_, p)| p).sum();
        assert!((sum - 1.0).abs() < 1e-4);
        assert!(
            face.probabilities
                .iter()
                .all(|(_, p)| p.is_finite() && *p >= 0.0)
        );
        assert_eq!(face.label, face.probabilities[face.class].0);
        assert!(face.crop.width > face.bbox.width);
    }
    // Sorted by detector score.
    assert!(faces.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn batched_and_single_answers_agree() {
    let bytes = photo_bytes();
    let one_by_one = common::bundled(PredictorConfig {
        batch_size: 1,
        ..PredictorConfig::default()
    });
    let batched = common::bundled(PredictorConfig {
        batch_size: 64,
        ..PredictorConfig::default()
    });
    let single = one_by_one.predict_bytes(&bytes).unwrap();
    let faces = &single.prediction.faces;
    // The comparison can fail: the faces' answers differ from one another by far more than
    // its tolerance, so a batch that mixed up or averaged its rows would be caught.
    let spread = faces
        .iter()
        .map(|face| common::max_difference(face, &faces[0]))
        .fold(0.0, f32::max);
    assert!(spread > 0.1, "the faces' answers differ by only {spread}");
    let many = batched.predict_many(&[bytes.as_slice(), bytes.as_slice()]);
    for result in many {
        let result = result.unwrap();
        assert_eq!(result.prediction.faces.len(), faces.len());
        for (a, b) in result.prediction.faces.iter().zip(faces) {
            assert_eq!(a.bbox, b.bbox);
            let difference = common::max_difference(a, b);
            assert!(difference < 1e-4, "differs by {difference}");
        }
    }
}

#[test]
fn grad_cam_and_pictures_of_the_photo() {
    let bytes = photo_bytes();
    let predictor = common::predictor(PredictorConfig::default());
    let analysed = predictor.predict_bytes(&bytes).unwrap();
    let faces = &analysed.prediction.faces;
    let cams = predictor.grad_cam(&analysed);
    assert_eq!(cams.len(), faces.len());
    for (cam, face) in cams.iter().zip(faces) {
        assert_eq!(cam.class, face.class);
        assert_eq!(cam.values.len(), cam.width * cam.height);
        assert!(cam.values.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let rgb = analysed.image.to_rgb8();
    let overlay = draw::cam_overlay(&rgb, faces[0].crop, &cams[0], 160);
    assert_eq!(overlay.dimensions(), (160, 160));

    let annotated = draw::annotate(&analysed.image, &analysed.prediction, predictor.classes());
    assert_eq!(annotated.dimensions(), (1666, 1136));
    // The box of the first face is drawn just outside it, in its label's colour.
    let b = faces[0].bbox;
    let color = draw::class_color(faces[0].class);
    assert_eq!(
        annotated
            .get_pixel(b.x as u32 + b.width / 2, b.y as u32 + b.height)
            .0,
        color
    );
}
