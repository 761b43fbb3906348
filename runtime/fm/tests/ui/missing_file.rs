fm::model!("does_not_exist.fm");

fn main() {}
