//! Class names, in the canonical order of each dataset. A label is an index into one of these.
//! And matching the classes of a network to those of a dataset by name.

use crate::{DataError, Result};

/// FER2013, from the Kaggle challenge page "Challenges in Representation Learning: Facial
/// Expression Recognition Challenge" (Goodfellow et al., 2013): `emotion` is
/// 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
pub const FER2013_CLASSES: [&str; 7] = [
    "Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral",
];

/// Pixels per FER2013 row: 48 x 48, row-major (Kaggle challenge page).
pub const FER2013_SIDE: u32 = 48;

/// FER+ (Barsoum et al., 2016, "Training Deep Networks for Facial Expression Recognition with
/// Crowd-Sourced Label Distribution"): the emotion columns of `fer2013new.csv`, in file order.
pub const FERPLUS_CLASSES: [&str; 8] = [
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
];

/// The two FER+ columns after the emotions whose majority drops a row (the FER+ authors'
/// `ferplus.py` skips images whose label is `unknown` or `NF`, not a face).
pub const FERPLUS_REJECT_COLUMNS: [&str; 2] = ["unknown", "NF"];

/// CK+ emotion codes (Lucey et al., 2010, "The Extended Cohn-Kanade Dataset (CK+)", Table 2 and
/// the `Emotion/*_emotion.txt` files): 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear,
/// 5 happy, 6 sadness, 7 surprise. With the first frame as neutral, the label is the code.
pub const CKPLUS_CLASSES_WITH_NEUTRAL: [&str; 8] = [
    "neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise",
];

/// The seven labelled CK+ emotions (code - 1), also the folder names of the CK+48 layout.
pub const CKPLUS_CLASSES: [&str; 7] = [
    "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise",
];

/// Folder names of the FER2013 folder layout (the Kaggle "fer2013" image version), each with
/// its FER2013 label. Mapped by name: their alphabetical order is not the label order.
pub const FER2013_FOLDER_NAMES: [(&str, usize); 7] = [
    ("angry", 0),
    ("disgust", 1),
    ("fear", 2),
    ("happy", 3),
    ("sad", 4),
    ("surprise", 5),
    ("neutral", 6),
];

/// The FER2013 label of a class folder name, accepting the usual spellings of other layouts.
pub fn fer2013_label_of_folder(name: &str) -> Option<usize> {
    let wanted = canonical_class_name(name);
    FER2013_CLASSES
        .iter()
        .position(|class| canonical_class_name(class) == wanted)
}

/// The name an expression goes by whatever the dataset calls it: trimmed, lower case, with the
/// usual variants folded together (`Angry` and `anger`, `happiness` and `happy`, ...), so the
/// classes of FER2013, FER+, CK+ and folder layouts can be matched by name.
pub fn canonical_class_name(name: &str) -> String {
    let name = name.trim().to_lowercase();
    let canonical = match name.as_str() {
        "anger" | "angry" => "anger",
        "disgust" | "disgusted" => "disgust",
        "fear" | "fearful" | "afraid" => "fear",
        "happy" | "happiness" => "happy",
        "sad" | "sadness" => "sad",
        "surprise" | "surprised" => "surprise",
        "neutral" | "neutrality" => "neutral",
        "contempt" | "contemptuous" => "contempt",
        _ => return name,
    };
    canonical.to_string()
}

/// What to do with classes that do not match by name, as `model=data,...`: `contempt=disgust`
/// scores the network's `contempt` output as the dataset's `disgust` (several outputs may go
/// to one class; their probabilities add), `contempt=-` ignores that output (the others are
/// renormalised), `-=contempt` leaves the dataset's `contempt` samples out. Names are matched
/// as [`canonical_class_name`] spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassMap {
    /// `(network class, dataset class)`; `None` is `-`.
    pub entries: Vec<(Option<String>, Option<String>)>,
}

impl std::str::FromStr for ClassMap {
    type Err = DataError;

    fn from_str(spec: &str) -> Result<Self> {
        let side = |name: &str| {
            let name = name.trim();
            (name != "-").then(|| name.to_string())
        };
        let mut entries = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((model, data)) = entry.split_once('=') else {
                return Err(DataError::spec(
                    spec,
                    format!("`{entry}` is not `model=data` (`-` for none)"),
                ));
            };
            if model.trim().is_empty() || data.trim().is_empty() {
                return Err(DataError::spec(
                    spec,
                    format!("`{entry}` has an empty side, expected a class name or `-`"),
                ));
            }
            let pair = (side(model), side(data));
            if pair == (None, None) {
                return Err(DataError::spec(spec, "`-=-` maps nothing"));
            }
            entries.push(pair);
        }
        Ok(Self { entries })
    }
}

/// How the outputs of a network score against the labels of a dataset, from
/// [`match_classes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassMatching {
    /// For each network output, the dataset class it counts as (`None`: ignored).
    pub data_of_model: Vec<Option<usize>>,
    /// For each dataset class, whether some output scores it; samples of the others are left
    /// out.
    pub data_scored: Vec<bool>,
}

impl ClassMatching {
    /// Output `k` is class `k`.
    pub fn identity(classes: usize) -> Self {
        Self {
            data_of_model: (0..classes).map(Some).collect(),
            data_scored: vec![true; classes],
        }
    }

    pub fn is_identity(&self) -> bool {
        self.data_of_model.len() == self.data_scored.len()
            && self
                .data_of_model
                .iter()
                .enumerate()
                .all(|(k, &d)| d == Some(k))
    }

    /// Whether a sample with this dataset label is scored.
    pub fn scores(&self, label: usize) -> bool {
        self.data_scored.get(label).copied().unwrap_or(false)
    }

    /// The network's log-probabilities over its outputs, as log-probabilities over the
    /// dataset's classes: a permutation moves them (exactly), outputs mapped to one class add
    /// their probabilities, ignored outputs are dropped and the rest renormalised. A class no
    /// output scores gets `-inf`.
    pub fn map_log_probs(&self, model: &[f32], data: &mut [f32]) {
        data.fill(f32::NEG_INFINITY);
        let mut any_ignored = false;
        for (&log_p, &class) in model.iter().zip(&self.data_of_model) {
            match class {
                Some(j) => data[j] = log_add_exp(data[j], log_p),
                None => any_ignored = true,
            }
        }
        if any_ignored {
            let kept = data
                .iter()
                .fold(f32::NEG_INFINITY, |sum, &v| log_add_exp(sum, v));
            for v in data.iter_mut() {
                *v -= kept;
            }
        }
    }
}

/// `ln(e^a + e^b)`, exact when either is `-inf`.
fn log_add_exp(a: f32, b: f32) -> f32 {
    if a == f32::NEG_INFINITY {
        return b;
    }
    if b == f32::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// Matches the classes of a network (`model`, in output order) to those of a dataset by name
/// ([`canonical_class_name`]), after the explicit entries of `map`. Every output must count as
/// some class or be ignored, and every dataset class must be scored by some output or be left
/// out; otherwise the error lists both sides.
pub fn match_classes(model: &[String], data: &[String], map: &ClassMap) -> Result<ClassMatching> {
    let mismatch = |problem: String| DataError::ClassMismatch {
        model: model.to_vec(),
        data: data.to_vec(),
        problem,
    };
    let find = |names: &[String], name: &str, side: &str| {
        let wanted = canonical_class_name(name);
        let mut found = names
            .iter()
            .enumerate()
            .filter(|(_, n)| canonical_class_name(n) == wanted);
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Ok(i),
            (None, _) => Err(mismatch(format!(
                "the class map names `{name}`, not a {side} class"
            ))),
            (Some(_), Some(_)) => Err(mismatch(format!("two {side} classes are called `{name}`"))),
        }
    };
    let mut data_of_model: Vec<Option<Option<usize>>> = vec![None; model.len()];
    let mut data_left_out = vec![false; data.len()];
    for (model_name, data_name) in &map.entries {
        let j = data_name
            .as_deref()
            .map(|n| find(data, n, "dataset"))
            .transpose()?;
        match model_name {
            Some(name) => {
                let k = find(model, name, "network")?;
                if data_of_model[k].is_some() {
                    return Err(mismatch(format!("the class map names `{name}` twice")));
                }
                data_of_model[k] = Some(j);
            }
            None => {
                let j = j.expect("`-=-` is refused when the map is parsed");
                data_left_out[j] = true;
            }
        }
    }
    let mut unmatched = Vec::new();
    for (k, name) in model.iter().enumerate() {
        if data_of_model[k].is_some() {
            continue;
        }
        match find(data, name, "dataset") {
            Ok(j) => data_of_model[k] = Some(Some(j)),
            Err(_) => unmatched.push(format!("network `{name}` has no dataset class")),
        }
    }
    let mut data_scored = vec![false; data.len()];
    for &j in data_of_model.iter().flatten().flatten() {
        data_scored[j] = true;
    }
    for (j, name) in data.iter().enumerate() {
        if data_scored[j] && data_left_out[j] {
            return Err(mismatch(format!(
                "the class map leaves dataset `{name}` out, but an output scores it"
            )));
        }
        if !data_scored[j] && !data_left_out[j] {
            unmatched.push(format!("dataset `{name}` has no network class"));
        }
    }
    if !unmatched.is_empty() {
        return Err(mismatch(unmatched.join(", ")));
    }
    Ok(ClassMatching {
        data_of_model: data_of_model
            .into_iter()
            .map(|d| d.expect("an unmatched output was reported above"))
            .collect(),
        data_scored,
    })
}

/// Owned class names from one of the constants above.
pub(crate) fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_map_by_name_not_alphabetically() {
        let mut alphabetical: Vec<&str> = FER2013_FOLDER_NAMES.iter().map(|(n, _)| *n).collect();
        alphabetical.sort();
        // neutral sorts before sad and surprise, but is label 6.
        assert_eq!(alphabetical[4], "neutral");
        assert_eq!(fer2013_label_of_folder("neutral"), Some(6));
        assert_eq!(fer2013_label_of_folder("Sad"), Some(4));
        assert_eq!(fer2013_label_of_folder("sadness"), Some(4));
        assert_eq!(fer2013_label_of_folder("contempt"), None);
        for (name, label) in FER2013_FOLDER_NAMES {
            assert_eq!(FER2013_CLASSES[label].to_ascii_lowercase(), name);
        }
    }

    fn names(names: &[&str]) -> Vec<String> {
        owned(names)
    }

    #[test]
    fn synonyms_fold_to_one_name() {
        for (a, b) in [
            ("Angry", "anger"),
            ("happiness", "Happy"),
            ("sadness", "sad"),
            ("surprised", "Surprise"),
            ("fearful", "fear"),
            ("disgusted", "Disgust"),
            ("neutrality", "neutral"),
            (" contempt ", "Contempt"),
        ] {
            assert_eq!(canonical_class_name(a), canonical_class_name(b), "{a} {b}");
        }
        assert_ne!(
            canonical_class_name("contempt"),
            canonical_class_name("disgust")
        );
    }

    #[test]
    fn fer2013_classes_match_ferplus_names_in_another_order() {
        // FER+ has contempt, FER2013 does not: the network's contempt output is ignored.
        let ferplus = names(&FERPLUS_CLASSES);
        let fer2013 = names(&FER2013_CLASSES);
        let err = match_classes(&ferplus, &fer2013, &ClassMap::default()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("network `contempt` has no dataset class")
                && message.contains("neutral, happiness")
                && message.contains("Angry, Disgust")
                && !message.contains('\n'),
            "{message}"
        );
        let map: ClassMap = "contempt=-".parse().unwrap();
        let matching = match_classes(&ferplus, &fer2013, &map).unwrap();
        // neutral happiness surprise sadness anger disgust fear contempt
        // -> Neutral Happy Surprise Sad Angry Disgust Fear, ignored.
        assert_eq!(
            matching.data_of_model,
            vec![
                Some(6),
                Some(3),
                Some(5),
                Some(4),
                Some(0),
                Some(1),
                Some(2),
                None
            ]
        );
        assert!(matching.data_scored.iter().all(|&s| s));

        // The other way round, the dataset's contempt samples are left out.
        let err = match_classes(&fer2013, &ferplus, &ClassMap::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("dataset `contempt` has no network class"),
            "{err}"
        );
        let matching = match_classes(&fer2013, &ferplus, &"-=contempt".parse().unwrap()).unwrap();
        assert!(!matching.scores(7) && matching.scores(0));
    }

    #[test]
    fn a_permutation_moves_log_probabilities_exactly() {
        let model = names(&["sad", "Happy", "anger"]);
        let data = names(&["Angry", "Happy", "Sad"]);
        let matching = match_classes(&model, &data, &ClassMap::default()).unwrap();
        assert!(!matching.is_identity());
        let mut out = [0.0; 3];
        matching.map_log_probs(&[-0.1, -2.0, -3.0], &mut out);
        assert_eq!(out, [-3.0, -2.0, -0.1]);
        let same = match_classes(&data, &data, &ClassMap::default()).unwrap();
        assert!(same.is_identity());
        assert_eq!(same, ClassMatching::identity(3));
    }

    #[test]
    fn merged_outputs_add_and_ignored_outputs_renormalise() {
        let model = names(&["anger", "contempt", "disgust", "other"]);
        let data = names(&["anger", "disgust"]);
        let map: ClassMap = "contempt=disgust, other=-".parse().unwrap();
        let matching = match_classes(&model, &data, &map).unwrap();
        let probs = [0.4f32, 0.2, 0.2, 0.2];
        let mut out = [0.0; 2];
        matching.map_log_probs(&probs.map(f32::ln), &mut out);
        assert!((out[0].exp() - 0.5).abs() < 1e-6, "{out:?}");
        assert!((out[1].exp() - 0.5).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn bad_class_maps_are_one_line_errors() {
        for spec in ["contempt", "=disgust", "contempt=", "-=-"] {
            let err = spec.parse::<ClassMap>().unwrap_err().to_string();
            assert!(err.contains(spec) && !err.contains('\n'), "{spec}: {err}");
        }
        let model = names(&["anger", "disgust"]);
        for (spec, expected) in [
            ("bogus=anger", "names `bogus`, not a network class"),
            ("anger=bogus", "names `bogus`, not a dataset class"),
            ("anger=anger,angry=disgust", "names `angry` twice"),
            (
                "-=anger",
                "leaves dataset `anger` out, but an output scores it",
            ),
        ] {
            let err = match_classes(&model, &model, &spec.parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains(expected), "{spec}: {err}");
        }
    }
}
