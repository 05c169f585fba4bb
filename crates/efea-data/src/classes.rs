//! Class names, in the canonical order of each dataset. A label is an index into one of these.

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
    let name = name.trim().to_ascii_lowercase();
    let canonical = match name.as_str() {
        "anger" | "angry" => "angry",
        "disgust" | "disgusted" => "disgust",
        "fear" | "fearful" | "afraid" => "fear",
        "happy" | "happiness" => "happy",
        "sad" | "sadness" => "sad",
        "surprise" | "surprised" => "surprise",
        "neutral" => "neutral",
        _ => return None,
    };
    FER2013_FOLDER_NAMES
        .iter()
        .find(|(folder, _)| *folder == canonical)
        .map(|&(_, label)| label)
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
}
