//! Rows of observations as CSV or JSON lines, one per (analysed frame, track). Streaming
//! output is flushed after every analysed frame instead of written atomically: a long video
//! shows its results as they come, and a run stopped by a damaged file (or by the user)
//! leaves every row before the stop complete.

use std::io::Write;

use serde::{Serialize, Serializer};

use crate::analyse::Observation;

/// CSV: `frame,time,track,x,y,width,height,score,label,raw_label`, then the smoothed
/// probability of each class (named by the class), then the raw one (`raw_` + class).
#[derive(Debug)]
pub struct CsvRows<W: Write> {
    out: W,
    classes: Vec<String>,
    header_written: bool,
}

impl<W: Write> CsvRows<W> {
    pub fn new(out: W, classes: &[String]) -> Self {
        Self {
            out,
            classes: classes.to_vec(),
            header_written: false,
        }
    }

    /// The header (written before the first rows, or alone for a video without faces).
    pub fn header(&mut self) -> std::io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        write!(
            self.out,
            "frame,time,track,x,y,width,height,score,label,raw_label"
        )?;
        for class in &self.classes {
            write!(self.out, ",{}", csv_field(class))?;
        }
        for class in &self.classes {
            write!(self.out, ",{}", csv_field(&format!("raw_{class}")))?;
        }
        writeln!(self.out)
    }

    /// The rows of one analysed frame, flushed.
    pub fn rows(&mut self, observations: &[Observation]) -> std::io::Result<()> {
        self.header()?;
        for o in observations {
            let b = o.bbox;
            let score = o.score.map(|s| format!("{s:.4}")).unwrap_or_default();
            write!(
                self.out,
                "{},{:.3},{},{},{},{},{},{score},{},{}",
                o.frame,
                o.time,
                o.track,
                b.x,
                b.y,
                b.width,
                b.height,
                csv_field(&self.classes[o.class]),
                csv_field(&self.classes[o.raw_class]),
            )?;
            for p in o.smoothed.iter().chain(&o.raw) {
                write!(self.out, ",{p:.5}")?;
            }
            writeln!(self.out)?;
        }
        self.out.flush()
    }
}

/// JSON lines: one object per observation, with `probabilities` (smoothed) and `raw` as maps
/// from class name to probability, in class order.
#[derive(Debug)]
pub struct JsonRows<W: Write> {
    out: W,
    classes: Vec<String>,
}

impl<W: Write> JsonRows<W> {
    pub fn new(out: W, classes: &[String]) -> Self {
        Self {
            out,
            classes: classes.to_vec(),
        }
    }

    pub fn rows(&mut self, observations: &[Observation]) -> std::io::Result<()> {
        for o in observations {
            let row = JsonRow {
                frame: o.frame,
                time: (o.time * 1000.0).round() / 1000.0,
                track: o.track,
                bbox: o.bbox,
                score: o.score,
                label: &self.classes[o.class],
                raw_label: &self.classes[o.raw_class],
                probabilities: ClassMap(&self.classes, &o.smoothed),
                raw: ClassMap(&self.classes, &o.raw),
            };
            serde_json::to_writer(&mut self.out, &row)?;
            writeln!(self.out)?;
        }
        self.out.flush()
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    frame: u64,
    time: f64,
    track: u32,
    #[serde(rename = "box")]
    bbox: efea_infer::Rect,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    label: &'a str,
    raw_label: &'a str,
    probabilities: ClassMap<'a>,
    raw: ClassMap<'a>,
}

/// Class name to value, in class order (a `serde_json::Map` would sort the names).
#[derive(Debug)]
pub struct ClassMap<'a>(pub &'a [String], pub &'a [f32]);

impl Serialize for ClassMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().zip(self.1))
    }
}

pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use efea_infer::Rect;

    fn observation() -> Observation {
        let bbox = Rect {
            x: 10,
            y: -2,
            width: 40,
            height: 44,
        };
        Observation {
            frame: 31,
            time: 1.0333,
            track: 2,
            bbox,
            crop: bbox,
            score: Some(0.99),
            class: 1,
            raw_class: 0,
            raw: vec![0.6, 0.4],
            smoothed: vec![0.3, 0.7],
        }
    }

    #[test]
    fn csv_rows_carry_smoothed_then_raw_probabilities() {
        let classes = ["happy".to_string(), "sad, a bit".to_string()];
        let mut out = Vec::new();
        CsvRows::new(&mut out, &classes)
            .rows(&[observation()])
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "frame,time,track,x,y,width,height,score,label,raw_label,happy,\"sad, a bit\",raw_happy,\"raw_sad, a bit\"\n\
             31,1.033,2,10,-2,40,44,0.9900,\"sad, a bit\",happy,0.30000,0.70000,0.60000,0.40000\n"
        );
    }

    #[test]
    fn json_rows_keep_the_class_order() {
        let classes = ["zeta".to_string(), "alpha".to_string()];
        let mut out = Vec::new();
        JsonRows::new(&mut out, &classes)
            .rows(&[observation()])
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1);
        assert!(
            text.contains(r#""probabilities":{"zeta":0.3,"alpha":0.7}"#),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["box"]["y"], -2);
        assert_eq!(value["label"], "alpha");
        assert_eq!(value["raw_label"], "zeta");
    }
}
