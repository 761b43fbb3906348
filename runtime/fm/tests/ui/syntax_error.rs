fm::model!("syntax_error.fm");

fn main() {}
