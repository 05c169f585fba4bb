//! `efea model summary` prints the per-layer table and the reference's totals.

use std::process::Command;

fn efea(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_efea"))
        .args(args)
        .output()
        .expect("efea runs")
}

#[test]
fn full_preset_prints_the_reference_totals() {
    let out = efea(&["model", "summary", "--preset", "full"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    // Counted by reference/efea_msm.py's count_params_and_macs (tests/fixtures/parity/counts.json).
    assert_eq!(
        stdout.lines().last().unwrap(),
        "total parameters: 2331311, multiply-adds: 56051540"
    );
    assert!(stdout.contains("features.17.cdsm"), "{stdout}");
    assert!(stdout.contains("msca"), "{stdout}");
}

#[test]
fn plain_preset_has_no_attention_rows() {
    let out = efea(&[
        "model",
        "summary",
        "--preset",
        "plain",
        "--input",
        "96",
        "--classes",
        "8",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains("cdsm") && !stdout.contains("msca"),
        "{stdout}"
    );
    assert!(stdout.contains("classifier"), "{stdout}");
}

#[test]
fn an_impossible_input_size_is_a_one_line_error() {
    let out = efea(&["model", "summary", "--input", "8"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("input_size"), "{stderr}");
}
