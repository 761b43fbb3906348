// A path that does not exist: the error names it and says how paths resolve.
fm::model!("no_such_model.fm");

fn main() {}
