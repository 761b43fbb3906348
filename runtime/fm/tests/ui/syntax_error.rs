// A syntax error in the .fm file: the compile error carries fm's diagnostic with its line.
fm::model!("syntax_error.fm");

fn main() {}
