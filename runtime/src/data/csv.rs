//! CSV with a header row: every value numeric. The target column is taken out; the inputs are
//! the other columns, in file order, as an `[N, columns - 1]` array.

use super::raw::{RawArray, RawData};
use crate::error::{ErrorKind, RuntimeError};

/// A parsed CSV file: its header and its values row by row.
pub struct CsvTable {
    pub origin: String,
    pub header: Vec<String>,
    /// Row-major values, `rows * header.len()`.
    pub values: Vec<f64>,
    pub rows: usize,
}

/// Parses CSV text with a header; every field must be a number.
pub fn parse_csv(origin: &str, bytes: &[u8]) -> Result<CsvTable, RuntimeError> {
    let err = |kind, msg: String| RuntimeError::in_origin(kind, origin, msg);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| {
            err(
                ErrorKind::BadFormat,
                format!("cannot read the CSV header: {e}"),
            )
        })?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(err(
            ErrorKind::BadFormat,
            "the CSV file has no header row".into(),
        ));
    }
    let mut values = Vec::new();
    let mut rows = 0;
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| err(ErrorKind::BadFormat, format!("line {line}: {e}")))?;
        if record.len() != header.len() {
            return Err(err(
                ErrorKind::BadFormat,
                format!(
                    "line {line}: expected {} fields as in the header, found {}",
                    header.len(),
                    record.len()
                ),
            ));
        }
        for (field, column) in record.iter().zip(&header) {
            let value: f64 = field.parse().map_err(|_| {
                err(
                    ErrorKind::DType,
                    format!("line {line}, column '{column}': expected a number, found '{field}'"),
                )
            })?;
            values.push(value);
        }
        rows += 1;
    }
    Ok(CsvTable {
        origin: origin.to_string(),
        header,
        values,
        rows,
    })
}

impl CsvTable {
    fn column_index(&self, column: &str) -> Result<usize, RuntimeError> {
        self.header.iter().position(|h| h == column).ok_or_else(|| {
            RuntimeError::in_origin(
                ErrorKind::BadFormat,
                &self.origin,
                format!(
                    "no column '{column}' in the CSV header (it has: {})",
                    self.header.join(", ")
                ),
            )
        })
    }

    /// The column `column` as an `[N]` array.
    pub fn column(&self, column: &str) -> Result<RawArray, RuntimeError> {
        let c = self.column_index(column)?;
        let width = self.header.len();
        let data = (0..self.rows).map(|r| self.values[r * width + c]).collect();
        Ok(RawArray {
            origin: format!("{}:{column}", self.origin),
            shape: vec![self.rows],
            data: RawData::F64(data),
        })
    }

    /// Every column except `target` (all columns when `None`) as an `[N, columns]` array.
    pub fn features(&self, target: Option<&str>) -> Result<RawArray, RuntimeError> {
        let skip = target.map(|t| self.column_index(t)).transpose()?;
        let width = self.header.len();
        let kept: Vec<usize> = (0..width).filter(|&c| Some(c) != skip).collect();
        let mut data = Vec::with_capacity(self.rows * kept.len());
        for r in 0..self.rows {
            data.extend(kept.iter().map(|&c| self.values[r * width + c]));
        }
        Ok(RawArray {
            origin: self.origin.clone(),
            shape: vec![self.rows, kept.len()],
            data: RawData::F64(data),
        })
    }
}
