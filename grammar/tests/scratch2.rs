#[test]
fn print_file() {
    let path = std::env::var("FM").unwrap();
    let src = std::fs::read_to_string(&path).unwrap();
    let (file, diags) = fm_grammar::parse(&src);
    for d in &diags {
        println!(
            "{} {:?} {} | {:?}",
            d.code,
            d.primary
                .as_ref()
                .map(|l| fm_grammar::line_col(&src, l.span.start)),
            d.message,
            d.secondary
                .iter()
                .map(|l| (fm_grammar::line_col(&src, l.span.start), &l.message))
                .collect::<Vec<_>>()
        );
    }
    println!("{}", fm_grammar::dump_ast(&file, &src));
}
