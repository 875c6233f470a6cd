//! Column kinds and the `table!` macro that declares an output table once.
//!
//! A table's column list is written in one place; the macro derives from it the Arrow schema
//! (the same one the stores' DDL mirrors), the builders that rows append into, and the cut
//! that turns the builders into a `RecordBatch` and leaves them empty for the next rows.

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Decimal128Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_schema::{DataType, TimeUnit};

use crate::decimal::{PRECISION, SCALE};

/// One kind of column: its Arrow type and the builder that collects it.
pub trait ColumnKind {
    type Builder: ArrayBuilder;
    fn data_type() -> DataType;
    fn builder(capacity: usize) -> Self::Builder;
    /// An empty builder with room for `rows` rows of the kind `full` holds, so the next batch
    /// of that size never grows its buffers (each growth reallocates and copies all so far).
    fn builder_like(full: &Self::Builder, rows: usize) -> Self::Builder {
        let _ = full;
        Self::builder(rows)
    }
}

/// The most rows a table's builders keep room for after a cut: a collector's batches are
/// smaller (`batch_size`), and one large `decode` call does not leave its size reserved.
pub const KEPT_ROWS: usize = 65_536;

/// Bytes of text for `rows` rows, at the bytes per row of `len` rows holding `bytes`.
fn bytes_for(rows: usize, len: usize, bytes: usize) -> usize {
    if len == 0 {
        0
    } else {
        bytes.div_ceil(len) * rows
    }
}

/// UTF-8 text.
pub struct Utf8;
/// Raw bytes (a rejected frame need not be valid UTF-8).
pub struct Bytes;
/// An exact amount: `Decimal128(38, 18)`.
pub struct Decimal;
/// A UTC instant in microseconds.
pub struct TimestampUs;
pub struct Int32;
pub struct Int64;
pub struct Bool;

/// The time zone every timestamp column carries.
pub const UTC: &str = "UTC";

impl ColumnKind for Utf8 {
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> StringBuilder {
        StringBuilder::with_capacity(capacity, capacity * 8)
    }
    fn builder_like(full: &StringBuilder, rows: usize) -> StringBuilder {
        let bytes = bytes_for(rows, full.len(), full.values_slice().len());
        StringBuilder::with_capacity(rows, bytes)
    }
}

impl ColumnKind for Bytes {
    type Builder = BinaryBuilder;
    fn data_type() -> DataType {
        DataType::Binary
    }
    fn builder(capacity: usize) -> BinaryBuilder {
        BinaryBuilder::with_capacity(capacity, capacity * 64)
    }
    fn builder_like(full: &BinaryBuilder, rows: usize) -> BinaryBuilder {
        let bytes = bytes_for(rows, full.len(), full.values_slice().len());
        BinaryBuilder::with_capacity(rows, bytes)
    }
}

impl ColumnKind for Decimal {
    type Builder = Decimal128Builder;
    fn data_type() -> DataType {
        DataType::Decimal128(PRECISION, SCALE)
    }
    fn builder(capacity: usize) -> Decimal128Builder {
        Decimal128Builder::with_capacity(capacity).with_data_type(Self::data_type())
    }
}

impl ColumnKind for TimestampUs {
    type Builder = TimestampMicrosecondBuilder;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
    }
    fn builder(capacity: usize) -> TimestampMicrosecondBuilder {
        TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC)
    }
}

impl ColumnKind for Int32 {
    type Builder = Int32Builder;
    fn data_type() -> DataType {
        DataType::Int32
    }
    fn builder(capacity: usize) -> Int32Builder {
        Int32Builder::with_capacity(capacity)
    }
}

impl ColumnKind for Int64 {
    type Builder = Int64Builder;
    fn data_type() -> DataType {
        DataType::Int64
    }
    fn builder(capacity: usize) -> Int64Builder {
        Int64Builder::with_capacity(capacity)
    }
}

impl ColumnKind for Bool {
    type Builder = BooleanBuilder;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn builder(capacity: usize) -> BooleanBuilder {
        BooleanBuilder::with_capacity(capacity)
    }
}

/// `nullable!()` is true; `nullable!(required)` is false.
#[doc(hidden)]
#[macro_export]
macro_rules! __nullable {
    () => {
        true
    };
    (required) => {
        false
    };
}

/// Declares an output table: `table! { Name = "table_name" { col: Kind [required], ... } }`.
#[macro_export]
macro_rules! table {
    (
        $(#[$meta:meta])*
        $name:ident = $table:literal {
            $( $(#[$cmeta:meta])* $col:ident : $kind:ident $([$req:ident])? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$cmeta])* pub $col: <$crate::columns::$kind as $crate::columns::ColumnKind>::Builder, )*
        }

        impl $name {
            /// The table's name in every store.
            pub const NAME: &'static str = $table;

            /// The Arrow schema, built once.
            pub fn schema() -> arrow_schema::SchemaRef {
                use $crate::columns::ColumnKind;
                static SCHEMA: std::sync::OnceLock<arrow_schema::SchemaRef> =
                    std::sync::OnceLock::new();
                SCHEMA
                    .get_or_init(|| {
                        std::sync::Arc::new(arrow_schema::Schema::new(vec![
                            $( arrow_schema::Field::new(
                                stringify!($col),
                                $crate::columns::$kind::data_type(),
                                $crate::__nullable!($($req)?),
                            ), )*
                        ]))
                    })
                    .clone()
            }

            pub fn with_capacity(capacity: usize) -> Self {
                use $crate::columns::ColumnKind;
                Self { $( $col: $crate::columns::$kind::builder(capacity), )* }
            }

            /// Rows appended since the last cut.
            pub fn len(&self) -> usize {
                use arrow_array::builder::ArrayBuilder;
                [$( self.$col.len() ),*][0]
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Turns the rows so far into a batch and leaves the builders empty, with room
            /// for as many rows (and bytes of text) as this batch took, up to `KEPT_ROWS`.
            pub fn finish(&mut self) -> arrow_array::RecordBatch {
                use arrow_array::builder::ArrayBuilder;
                use $crate::columns::ColumnKind;
                let rows = self.len().min($crate::columns::KEPT_ROWS);
                let next = Self { $( $col: $crate::columns::$kind::builder_like(&self.$col, rows), )* };
                let mut full = std::mem::replace(self, next);
                let columns: Vec<arrow_array::ArrayRef> = vec![$( ArrayBuilder::finish(&mut full.$col) ),*];
                arrow_array::RecordBatch::try_new(Self::schema(), columns)
                    .expect("every column is appended once per row")
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::{bytes_for, KEPT_ROWS};

    crate::table! {
        Sample = "sample" {
            name: Utf8 [required],
            amount: Decimal,
        }
    }

    fn filled(rows: usize) -> Sample {
        assert_eq!(Sample::NAME, "sample");
        let mut sample = Sample::with_capacity(0);
        for i in 0..rows {
            sample.name.append_value("twelve bytes");
            sample
                .amount
                .append_option((i % 2 == 0).then_some(i as i128));
        }
        sample
    }

    #[test]
    fn a_cut_leaves_room_for_as_many_rows_as_it_took() {
        let mut sample = filled(1_000);
        let batch = sample.finish();
        assert_eq!(batch.num_rows(), 1_000);
        assert!(sample.is_empty());
        assert!(sample.amount.capacity() >= 1_000);
        // The rows after the cut are whole rows of their own.
        sample.name.append_value("x");
        sample.amount.append_null();
        let next = sample.finish();
        assert_eq!(next.num_rows(), 1);
        assert_eq!(next.column(1).null_count(), 1);
    }

    #[test]
    fn a_large_cut_keeps_room_for_kept_rows_only() {
        let mut sample = filled(KEPT_ROWS + 10);
        sample.finish();
        assert!(sample.amount.capacity() >= KEPT_ROWS);
        assert!(sample.amount.capacity() < KEPT_ROWS + 10 + 64);
    }

    #[test]
    fn text_room_scales_with_the_rows_kept() {
        assert_eq!(bytes_for(10, 0, 0), 0);
        assert_eq!(bytes_for(10, 10, 120), 120);
        assert_eq!(bytes_for(5, 10, 121), 65);
    }
}
