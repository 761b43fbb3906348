// `model = NAME` names a model the file does not declare: the error lists the ones it has.
fm::model!("zoo.fm", model = medium);

fn main() {}
