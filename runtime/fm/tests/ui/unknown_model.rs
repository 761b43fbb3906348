fm::model!("zoo.fm", model = resnet_huge);

fn main() {}
