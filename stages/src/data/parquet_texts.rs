//! Reads one string column of Parquet files row by row (the `parquet` crate's record reader, projected to
//! that column, without Arrow), so memory stays at about one page whatever the file size.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::record::reader::RowIter;
use parquet::schema::types::Type;

use crate::data::DataError;

/// Iterator over `(row number from 1, text or why the row has none)`.
pub struct ParquetTexts {
    path: PathBuf,
    rows: RowIter<'static>,
    row: u64,
}

impl ParquetTexts {
    /// Opens `path` and projects it to `column`.
    pub fn open(path: &Path, column: &str) -> Result<Self, DataError> {
        let err = |reason: String| DataError::Parquet {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| DataError::read(path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|e| err(e.to_string()))?;
        let schema = reader.metadata().file_metadata().schema();
        let Some(field) = schema
            .get_fields()
            .iter()
            .find(|f| f.name() == column)
            .cloned()
        else {
            let names: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
            return Err(err(format!(
                "it has no column `{column}` (columns: {})",
                names.join(", ")
            )));
        };
        let projection = Type::group_type_builder(schema.name())
            .with_fields(vec![field])
            .build()
            .map_err(|e| err(e.to_string()))?;
        let rows = RowIter::from_file_into(Box::new(reader))
            .project(Some(projection))
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            rows,
            row: 0,
        })
    }
}

impl Iterator for ParquetTexts {
    type Item = Result<(u64, Result<String, String>), DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let row = match self.rows.next()? {
            Ok(row) => row,
            Err(e) => {
                return Some(Err(DataError::Parquet {
                    path: self.path.clone(),
                    reason: e.to_string(),
                }));
            }
        };
        self.row += 1;
        let text = match row.into_columns().into_iter().next().map(|(_, f)| f) {
            Some(Field::Str(s)) => Ok(s),
            Some(Field::Bytes(b)) => String::from_utf8(b.data().to_vec())
                .map_err(|_| "the value is not UTF-8 text".to_owned()),
            Some(Field::Null) | None => Err("the value is null".to_owned()),
            Some(other) => Err(format!("the value is not a string but {other}")),
        };
        Some(Ok((self.row, text)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::*;

    /// Writes a Parquet file with an `id` and an optional string `text` column.
    pub(crate) fn write_parquet(path: &Path, texts: &[Option<&str>]) {
        let schema = Arc::new(
            parse_message_type("message doc { required int64 id; optional binary text (UTF8); }")
                .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build(),
        );
        let mut writer =
            SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let ids: Vec<i64> = (0..texts.len() as i64).collect();
        col.typed::<parquet::data_type::Int64Type>()
            .write_batch(&ids, None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = texts
            .iter()
            .flatten()
            .map(|t| ByteArray::from(*t))
            .collect();
        let defs: Vec<i16> = texts.iter().map(|t| i16::from(t.is_some())).collect();
        col.typed::<ByteArrayType>()
            .write_batch(&values, Some(&defs), None)
            .unwrap();
        col.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn reads_a_column_and_reports_nulls_and_missing_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write_parquet(&path, &[Some("first"), None, Some("third")]);
        let rows: Vec<(u64, Result<String, String>)> = ParquetTexts::open(&path, "text")
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows[0], (1, Ok("first".to_owned())));
        assert!(rows[1].1.as_ref().is_err_and(|e| e.contains("null")));
        assert_eq!(rows[2], (3, Ok("third".to_owned())));
        let err = ParquetTexts::open(&path, "body").err().unwrap().to_string();
        assert!(
            err.contains("no column `body`") && err.contains("t.parquet"),
            "{err}"
        );
    }
}
