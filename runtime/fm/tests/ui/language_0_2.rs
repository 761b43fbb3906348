// A language 0.2 construct the emitter does not support yet is a compile error naming it.
fm::model!("sampled.fm");

fn main() {}
