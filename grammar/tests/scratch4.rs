#[test]
fn fmt_file() {
    let path = std::env::var("FM").unwrap();
    let src = std::fs::read_to_string(&path).unwrap();
    let (file, d) = fm_grammar::parse(&src);
    assert!(d.is_empty(), "{d:?}");
    let out = fm_grammar::format(&file, &src);
    println!("{out}");
    let (file2, d2) = fm_grammar::parse(&out);
    assert!(d2.is_empty(), "{d2:?}");
    let out2 = fm_grammar::format(&file2, &out);
    assert_eq!(out, out2);
}
