//! Bytes as a `POST /v1/predict`: content type, query and body, through the whole router.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: efea_fuzz::init("server_request"), |data: &[u8]| efea_fuzz::server_request(data));
