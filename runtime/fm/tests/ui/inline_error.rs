fm::model! {
    model tiny {
        input x: f32[4]
        output y = x -> Dense(2, relu) -> Dens(1)
    }
}

fn main() {}
