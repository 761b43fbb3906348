// An error in an inline model points at the offending token.
fm::model! {
    model inline_tiny {
        input x: f32[4]
        output y = x -> Dense(2, relu) -> Dense(3, sofmax)
    }
}

fn main() {}
