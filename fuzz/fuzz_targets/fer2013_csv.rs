//! Bytes as a FER2013 CSV file (`emotion,pixels,Usage` and its variants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: efea_fuzz::init("fer2013_csv"), |data: &[u8]| efea_fuzz::fer2013_csv(data));
