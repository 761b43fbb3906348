fm::model!("shape_error.fm");

fn main() {}
