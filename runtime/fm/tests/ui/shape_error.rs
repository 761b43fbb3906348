// A shape error in the .fm file: fm's diagnostic (code, file:line:col, the underlined span).
fm::model!("shape_error.fm");

fn main() {}
