//! `model!`: compiles a `.fm` model into Rust at build time.
//!
//! ```text
//! fm::model!("digits_cnn.fm");                      // the file's only model
//! fm::model!("zoo.fm", model = resnet_tiny);        // one model of several
//! fm::model! { model tiny { input x: f32[4]  output y = x -> Dense(2) } }
//! ```
//!
//! A path is relative to the directory of the file that invokes the macro (as `include_str!`),
//! falling back to the crate's manifest directory. The expansion is what `fmc compile FILE
//! --emit rust` prints (`fm_compiler::emit::rust`), plus an `include_bytes!` of the file so
//! cargo rebuilds when it changes. A `.fm` error is a compile error carrying the rendered
//! diagnostic; inline, it points at the offending token. The macro never panics: a compiler
//! bug becomes a compile error too.

use fm_compiler::diag::{render_all, MessageFormat, SourceFile};
use fm_compiler::emit::rust::{emit_source, strip_comments, EmitError};
use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use std::path::{Path, PathBuf};

/// Compiles a `.fm` model to a Rust struct named after it (`digits_cnn` -> `DigitsCnn`).
/// See the `fm` crate's documentation for the generated API.
#[proc_macro]
pub fn model(input: TokenStream) -> TokenStream {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expand(input)));
    match result {
        Ok(tokens) => tokens.into(),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            let message = format!("internal error in fm's model! macro (please report it): {what}");
            quote!(::core::compile_error!(#message);).into()
        }
    }
}

fn error(span: Span, message: &str) -> TokenStream2 {
    quote_spanned!(span=> ::core::compile_error!(#message);)
}

fn expand(input: TokenStream) -> TokenStream2 {
    let tokens: Vec<proc_macro::TokenTree> = input.clone().into_iter().collect();
    match tokens.first() {
        Some(proc_macro::TokenTree::Literal(lit)) if lit.to_string().starts_with('"') => {
            expand_path(TokenStream2::from(input))
        }
        Some(_) => expand_inline(input),
        None => error(
            Span::call_site(),
            "model! needs a `.fm` path (`model!(\"model.fm\")`) or a model written inline",
        ),
    }
}

/// `"path.fm"` or `"path.fm", model = NAME`.
struct PathArgs {
    path: syn::LitStr,
    model: Option<syn::Ident>,
}

impl syn::parse::Parse for PathArgs {
    fn parse(input: syn::parse::ParseStream) -> syn::Result<Self> {
        let path: syn::LitStr = input.parse()?;
        let mut model = None;
        if input.peek(syn::Token![,]) {
            input.parse::<syn::Token![,]>()?;
            if !input.is_empty() {
                let key: syn::Ident = input.parse()?;
                if key != "model" {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown option `{key}`: the only option is `model = NAME`"),
                    ));
                }
                input.parse::<syn::Token![=]>()?;
                model = Some(input.call(syn::ext::IdentExt::parse_any)?);
                if input.peek(syn::Token![,]) {
                    input.parse::<syn::Token![,]>()?;
                }
            }
        }
        if !input.is_empty() {
            return Err(input.error("expected `model = NAME` or the end of the arguments"));
        }
        Ok(PathArgs { path, model })
    }
}

/// Where a relative path in a `model!` call resolves: the invoking file's directory, or the
/// manifest directory when the compiler does not say which file that is.
fn resolve(rel: &str) -> PathBuf {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute() {
        return rel_path.to_path_buf();
    }
    let caller = proc_macro::Span::call_site().local_file();
    if let Some(file) = caller {
        let file = if file.is_absolute() {
            file
        } else {
            std::env::current_dir().unwrap_or_default().join(file)
        };
        if let Some(dir) = file.parent() {
            let candidate = dir.join(rel_path);
            if candidate.exists() {
                return candidate;
            }
        }
    }
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    manifest.unwrap_or_default().join(rel_path)
}

fn expand_path(input: TokenStream2) -> TokenStream2 {
    let args: PathArgs = match syn::parse2(input) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error(),
    };
    let rel = args.path.value();
    let path = resolve(&rel);
    let lit_span = args.path.span();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            // The relative path only: the absolute one differs between machines.
            let e = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => e.to_string(),
            };
            return error(
                lit_span,
                &format!(
                    "cannot read `{rel}`: {e} (a path is relative to the file that invokes `model!`, then to the crate's directory)"
                ),
            );
        }
    };
    let source = String::from_utf8_lossy(&bytes).into_owned();
    let model = args.model.as_ref().map(|m| m.to_string());
    let code = match emit_source(&source, &path, model.as_deref()) {
        Ok(code) => code,
        Err(EmitError::Diagnostics(diags)) => {
            let shown = rel.clone();
            let rendered = render_all(
                &diags,
                &SourceFile {
                    name: &shown,
                    text: &source,
                },
                MessageFormat::Human,
                false,
            );
            return error(
                lit_span,
                &format!("`{rel}` has errors\n\n{}", rendered.trim_end()),
            );
        }
        Err(EmitError::Message(m)) => {
            let span = args.model.as_ref().map_or(lit_span, |m| m.span());
            return error(span, &format!("`{rel}`: {m}"));
        }
    };
    let tokens: TokenStream2 = match strip_comments(&code).parse() {
        Ok(t) => t,
        Err(e) => {
            return error(
                lit_span,
                &format!("internal error: fm emitted Rust that does not lex: {e}"),
            )
        }
    };
    let tracked = path.display().to_string();
    quote! {
        const _: &[u8] = ::core::include_bytes!(#tracked);
        #tokens
    }
}

/// A token of an inline model and where it starts in the reconstructed source.
struct Placed {
    line: usize,
    col: usize,
    span: proc_macro::Span,
}

/// Rebuilds the `.fm` text of an inline model from its tokens at their source positions (so
/// diagnostics' lines and columns map back to tokens). Comments are gone (the Rust lexer drops
/// them), except doc comments, which come back as the `///` lines they were.
struct Rebuilt {
    text: String,
    placed: Vec<Placed>,
    first_line: usize,
    line: usize,
    col: usize,
}

impl Rebuilt {
    fn put(&mut self, text: &str, span: proc_macro::Span) {
        let (line, col) = (span.line(), span.column());
        let line = line.max(self.first_line);
        if line > self.line {
            for _ in self.line..line {
                self.text.push('\n');
            }
            self.line = line;
            self.col = 1;
        }
        if col > self.col {
            for _ in self.col..col {
                self.text.push(' ');
            }
            self.col = col;
        } else if col < self.col && !self.text.is_empty() && !self.text.ends_with([' ', '\n']) {
            // Positions unknown or out of order (tokens from another macro): keep them apart.
            self.text.push(' ');
            self.col += 1;
        }
        self.placed.push(Placed {
            line: self.line - self.first_line + 1,
            col: self.col,
            span,
        });
        self.text.push_str(text);
        for c in text.chars() {
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
    }

    fn walk(&mut self, stream: TokenStream) {
        let mut iter = stream.into_iter().peekable();
        while let Some(tt) = iter.next() {
            match tt {
                proc_macro::TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        proc_macro::Delimiter::Parenthesis => ("(", ")"),
                        proc_macro::Delimiter::Brace => ("{", "}"),
                        proc_macro::Delimiter::Bracket => ("[", "]"),
                        proc_macro::Delimiter::None => ("", ""),
                    };
                    self.put(open, g.span_open());
                    self.walk(g.stream());
                    self.put(close, g.span_close());
                }
                proc_macro::TokenTree::Punct(p) => {
                    // A doc comment arrives as `#[doc = "..."]` spanning the comment.
                    if p.as_char() == '#' {
                        if let Some(proc_macro::TokenTree::Group(g)) = iter.peek() {
                            if let Some(src) = p.span().source_text() {
                                if src.starts_with("//") {
                                    let g = g.clone();
                                    iter.next();
                                    self.put(&src, g.span());
                                    continue;
                                }
                            }
                        }
                    }
                    let text = p.span().source_text().unwrap_or_else(|| p.to_string());
                    // Multi-character punctuation (`->`) comes as one Punct per character
                    // whose span covers the whole operator in some compilers: keep one char.
                    let text = if text.chars().count() > 1 {
                        p.as_char().to_string()
                    } else {
                        text
                    };
                    self.put(&text, p.span());
                }
                proc_macro::TokenTree::Ident(i) => {
                    let text = i.to_string();
                    self.put(&text, i.span());
                }
                proc_macro::TokenTree::Literal(l) => {
                    let text = l.span().source_text().unwrap_or_else(|| l.to_string());
                    self.put(&text, l.span());
                }
            }
        }
    }

    /// The token at 1-based `line`, `col` of the rebuilt text (the last one starting there or
    /// before on that line).
    fn span_at(&self, line: usize, col: usize) -> Option<proc_macro::Span> {
        self.placed
            .iter()
            .filter(|p| p.line == line && p.col <= col)
            .max_by_key(|p| p.col)
            .or_else(|| self.placed.iter().rfind(|p| p.line <= line))
            .map(|p| p.span)
    }
}

fn expand_inline(input: TokenStream) -> TokenStream2 {
    let first_line = input
        .clone()
        .into_iter()
        .next()
        .map_or(1, |t| t.span().line());
    let mut rebuilt = Rebuilt {
        text: String::new(),
        placed: Vec::new(),
        first_line,
        line: first_line,
        col: 1,
    };
    rebuilt.walk(input);
    rebuilt.text.push('\n');
    let source = rebuilt.text.clone();
    let label = "<inline model>";
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join("inline.fm");
    match emit_source(&source, &here, None) {
        Ok(code) => match strip_comments(&code).parse() {
            Ok(t) => t,
            Err(e) => error(
                Span::call_site(),
                &format!("internal error: fm emitted Rust that does not lex: {e}"),
            ),
        },
        Err(EmitError::Diagnostics(diags)) => {
            let mut out = TokenStream2::new();
            for d in diags.iter().filter(|d| d.is_error()) {
                let rendered = render_all(
                    std::slice::from_ref(d),
                    &SourceFile {
                        name: label,
                        text: &source,
                    },
                    MessageFormat::Human,
                    false,
                );
                let span = d
                    .primary
                    .as_ref()
                    .and_then(|l| {
                        let (line, col) = fm_compiler::diag::line_col(&source, l.span.start);
                        rebuilt.span_at(line, col)
                    })
                    .map_or(Span::call_site(), Span::from);
                out.extend(error(span, rendered.trim_end()));
            }
            out
        }
        Err(EmitError::Message(m)) => error(Span::call_site(), &m),
    }
}
