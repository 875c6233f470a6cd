//! Column kinds and the `table!` macro that declares an output table once.
//!
//! A table's column list is written in one place; the macro derives from it the Arrow schema
//! (the same one the stores' DDL mirrors), the builders that rows append into, and the cut
//! that turns the builders into a `RecordBatch` and leaves them empty for the next rows.

use std::any::Any;
use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, BinaryBuilder, BooleanBuilder, StringBuilder};
use arrow_array::types::{Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{ArrayRef, ArrowPrimitiveType, PrimitiveArray};
use arrow_buffer::{NullBufferBuilder, ScalarBuffer};
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

/// A column of fixed-width values (decimals, integers, timestamps), appended in line.
///
/// Arrow's `PrimitiveBuilder::append_option` was not inlined into the decoder (a call per
/// value, ~40 a position row: 8% of a collector's CPU under the firehose). This keeps the
/// values in a `Vec` and their validity in Arrow's own `NullBufferBuilder`, and hands both to
/// a `PrimitiveArray` at the cut without a copy.
pub struct PrimitiveColumn<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    nulls: NullBufferBuilder,
    data_type: DataType,
}

impl<T: ArrowPrimitiveType> PrimitiveColumn<T> {
    pub fn with_capacity(capacity: usize, data_type: DataType) -> Self {
        PrimitiveColumn {
            values: Vec::with_capacity(capacity),
            nulls: NullBufferBuilder::new(capacity),
            data_type,
        }
    }

    #[inline(always)]
    pub fn append_value(&mut self, value: T::Native) {
        self.values.push(value);
        self.nulls.append_non_null();
    }

    #[inline(always)]
    pub fn append_null(&mut self) {
        self.values.push(T::Native::default());
        self.nulls.append_null();
    }

    #[inline(always)]
    pub fn append_option(&mut self, value: Option<T::Native>) {
        match value {
            Some(value) => self.append_value(value),
            None => self.append_null(),
        }
    }

    /// Rows it has room for before it grows.
    pub fn capacity(&self) -> usize {
        self.values.capacity()
    }

    /// The values so far (a null row holds the type's default).
    pub fn values_slice(&self) -> &[T::Native] {
        &self.values
    }

    /// The validity bitmap so far, or `None` while no row is null.
    pub fn validity_slice(&self) -> Option<&[u8]> {
        self.nulls.as_slice()
    }

    fn array(&self, values: Vec<T::Native>, nulls: Option<arrow_buffer::NullBuffer>) -> ArrayRef {
        let array = PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls);
        Arc::new(array.with_data_type(self.data_type.clone()))
    }
}

impl<T: ArrowPrimitiveType> ArrayBuilder for PrimitiveColumn<T> {
    fn len(&self) -> usize {
        self.values.len()
    }

    fn finish(&mut self) -> ArrayRef {
        let values = std::mem::take(&mut self.values);
        let nulls = self.nulls.finish();
        self.array(values, nulls)
    }

    fn finish_cloned(&self) -> ArrayRef {
        self.array(self.values.clone(), self.nulls.finish_cloned())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn into_box_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl ColumnKind for Decimal {
    type Builder = PrimitiveColumn<Decimal128Type>;
    fn data_type() -> DataType {
        DataType::Decimal128(PRECISION, SCALE)
    }
    fn builder(capacity: usize) -> Self::Builder {
        PrimitiveColumn::with_capacity(capacity, Self::data_type())
    }
}

impl ColumnKind for TimestampUs {
    type Builder = PrimitiveColumn<TimestampMicrosecondType>;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
    }
    fn builder(capacity: usize) -> Self::Builder {
        PrimitiveColumn::with_capacity(capacity, Self::data_type())
    }
}

impl ColumnKind for Int32 {
    type Builder = PrimitiveColumn<Int32Type>;
    fn data_type() -> DataType {
        DataType::Int32
    }
    fn builder(capacity: usize) -> Self::Builder {
        PrimitiveColumn::with_capacity(capacity, Self::data_type())
    }
}

impl ColumnKind for Int64 {
    type Builder = PrimitiveColumn<Int64Type>;
    fn data_type() -> DataType {
        DataType::Int64
    }
    fn builder(capacity: usize) -> Self::Builder {
        PrimitiveColumn::with_capacity(capacity, Self::data_type())
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
    use super::{bytes_for, ColumnKind, Decimal, TimestampUs, KEPT_ROWS};
    use arrow_array::builder::ArrayBuilder;

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
    fn primitive_columns_keep_values_nulls_and_their_type_through_the_cut() {
        use arrow_array::{Array, Decimal128Array, TimestampMicrosecondArray};

        let mut amount = Decimal::builder(2);
        amount.append_value(1_500_000_000_000_000_000);
        assert_eq!(
            amount.validity_slice(),
            None,
            "no bitmap while no row is null"
        );
        amount.append_null();
        amount.append_option(Some(-7));
        assert_eq!(amount.values_slice(), &[1_500_000_000_000_000_000, 0, -7]);
        assert_eq!(amount.validity_slice(), Some(&[0b101u8][..]));
        let array = ArrayBuilder::finish(&mut amount);
        let decimals = array.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!((decimals.precision(), decimals.scale()), (38, 18));
        assert_eq!(decimals.value_as_string(0), "1.500000000000000000");
        assert!(decimals.is_null(1) && decimals.value(2) == -7);
        assert_eq!(ArrayBuilder::len(&amount), 0, "the cut leaves it empty");

        let mut at = TimestampUs::builder(1);
        at.append_option(Some(1_700_000_000_000_000));
        let array = ArrayBuilder::finish(&mut at);
        assert_eq!(array.data_type(), &TimestampUs::data_type());
        let instants = array
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(instants.null_count(), 0);
        assert_eq!(instants.value(0), 1_700_000_000_000_000);
    }

    #[test]
    fn text_room_scales_with_the_rows_kept() {
        assert_eq!(bytes_for(10, 0, 0), 0);
        assert_eq!(bytes_for(10, 10, 120), 120);
        assert_eq!(bytes_for(5, 10, 121), 65);
    }
}
