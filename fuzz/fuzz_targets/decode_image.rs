//! Bytes through the image decoder that datasets and inference share, with its pixel limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: efea_fuzz::init("decode_image"), |data: &[u8]| efea_fuzz::decode_image(data));
