//! Bytes as FER+'s `fer2013new.csv` vote file, next to a valid `fer2013.csv`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: efea_fuzz::init("ferplus_csv"), |data: &[u8]| efea_fuzz::ferplus_csv(data));
