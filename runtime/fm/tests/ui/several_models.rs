// A file with several models needs `model = NAME`.
fm::model!("zoo.fm");

fn main() {}
