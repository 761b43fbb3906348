//! Image grids of model outputs (`fmc predict --samples 64 -o grid.png`): a batch of
//! image-shaped samples `[N, H, W]` or `[N, H, W, C]` (C = 1 grey, 3 RGB) tiled into one
//! picture, written as PNG or SVG. Values are clamped to [0, 1] (a sigmoid output) and shown as
//! intensities.

use crate::error::RuntimeError;
use crate::fsutil::atomic_write;
use std::io::Write;
use std::path::Path;

/// `(height, width, channels)` when a per-sample shape is an image fm can draw.
pub fn image_shape(sample: &[usize]) -> Option<(usize, usize, usize)> {
    match sample {
        [h, w] => Some((*h, *w, 1)),
        [h, w, c] if *c == 1 || *c == 3 => Some((*h, *w, *c)),
        _ => None,
    }
}

/// The grid as rows of RGB pixels: `cols` images per row, a 1-pixel dark border between them.
fn grid(values: &[f32], n: usize, (h, w, c): (usize, usize, usize)) -> (usize, usize, Vec<u8>) {
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols).max(1);
    let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
    let mut px = vec![32u8; gw * gh * 3];
    for k in 0..n {
        let (r0, c0) = ((k / cols) * (h + 1) + 1, (k % cols) * (w + 1) + 1);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..3 {
                    let v = values[((k * h + y) * w + x) * c + ch.min(c - 1)];
                    let byte = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    px[((r0 + y) * gw + c0 + x) * 3 + ch] = byte;
                }
            }
        }
    }
    (gw, gh, px)
}

/// Writes `n` samples of shape `shape` (`values` in C order) as a grid; the format follows the
/// extension (`.png` or `.svg`).
pub fn write_grid(
    path: &Path,
    values: &[f32],
    n: usize,
    shape: (usize, usize, usize),
) -> Result<(), RuntimeError> {
    let (gw, gh, px) = grid(values, n, shape);
    let svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let bytes = if svg {
        svg_bytes(gw, gh, &px)
    } else {
        let (w, h, big) = upscale(gw, gh, &px, PNG_SCALE);
        png_bytes(w, h, &big)
    };
    atomic_write(path, &bytes)
}

/// Each pixel of a PNG grid becomes a square of this many pixels (8x8 digits are tiny).
const PNG_SCALE: usize = 6;

/// Repeats every pixel `k` times in both directions.
fn upscale(w: usize, h: usize, px: &[u8], k: usize) -> (usize, usize, Vec<u8>) {
    let mut out = Vec::with_capacity(w * h * 3 * k * k);
    for y in 0..h * k {
        for x in 0..w * k {
            let i = ((y / k) * w + x / k) * 3;
            out.extend_from_slice(&px[i..i + 3]);
        }
    }
    (w * k, h * k, out)
}

/// An SVG with one 1x1 rectangle per pixel, scaled up 8 times.
fn svg_bytes(w: usize, h: usize, px: &[u8]) -> Vec<u8> {
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {w} {h}\" shape-rendering=\"crispEdges\">\n",
        w * 8,
        h * 8
    );
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * 3;
            s.push_str(&format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"1\" height=\"1\" fill=\"#{:02x}{:02x}{:02x}\"/>\n",
                px[i],
                px[i + 1],
                px[i + 2]
            ));
        }
    }
    s.push_str("</svg>\n");
    s.into_bytes()
}

/// A minimal 8-bit RGB PNG (one IDAT chunk, filter 0 on every row).
fn png_bytes(w: usize, h: usize, px: &[u8]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut raw = Vec::with_capacity((w * 3 + 1) * h);
    for row in px.chunks(w * 3) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).expect("in-memory compression");
    let idat = z.finish().expect("in-memory compression");
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_tile_samples_and_png_has_its_signature_and_size() {
        let values: Vec<f32> = (0..4 * 2 * 3).map(|i| i as f32 / 24.0).collect();
        let (w, h, px) = grid(&values, 4, (2, 3, 1));
        assert_eq!((w, h), (2 * 4 + 1, 2 * 3 + 1));
        // Sample 0, pixel (0, 0) sits at (1, 1) and is 0; sample 1's first pixel is 6/24.
        assert_eq!(px[(w + 1) * 3], 0);
        assert_eq!(px[(w + 1 + 4) * 3], (6.0f32 / 24.0 * 255.0).round() as u8);
        let png = png_bytes(w, h, &px);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[16..20], &(w as u32).to_be_bytes());
        assert!(image_shape(&[8, 8, 1]).is_some() && image_shape(&[10]).is_none());
    }
}
