//! The CSV reader on arbitrary bytes: the table, its features and each column.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = fm_runtime::data::csv::parse_csv("fuzz.csv", data) {
        let _ = t.features(None);
        let first = t.header.first().cloned();
        if let Some(c) = first {
            let _ = t.column(&c);
            let _ = t.features(Some(&c));
        }
    }
});
