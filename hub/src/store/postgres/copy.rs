//! The bulk path of `till360-hub migrate` on PostgreSQL: rows go in by binary `COPY`
//! (`postgres::binary_copy`) instead of multi-row INSERTs, on the connection that holds
//! the copy's transaction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use super::driver::{connect, Bound, PgConnection};
use crate::config::PostgresUrl;
use crate::store::sql::{Row, Sql, Value};
use crate::store::transfer::{param, quoted, RowWriter, Table};
use crate::store::StoreError;

/// A PostgreSQL connection that writes a table's rows by binary COPY.
pub struct BinaryCopy {
    conn: PgConnection,
    /// Each table's column types, as the server has them.
    types: RefCell<HashMap<String, Vec<Type>>>,
}

impl BinaryCopy {
    /// Connects to `url` (the hub's settings: `timeout`, password from the URL or
    /// `PGPASSWORD`; errors name the URL without its password).
    pub fn connect(url: &PostgresUrl, timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            conn: connect(url, timeout)?,
            types: RefCell::new(HashMap::new()),
        })
    }

    fn column_types(&self, table: &Table, columns: &str) -> Result<Vec<Type>, StoreError> {
        if let Some(types) = self.types.borrow().get(&table.name) {
            return Ok(types.clone());
        }
        let statement = self
            .conn
            .client()
            .prepare(&format!(
                "SELECT {columns} FROM {} LIMIT 0",
                quoted(&table.name)
            ))
            .map_err(|e| self.conn.failure(&e))?;
        let types: Vec<Type> = statement
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        self.types
            .borrow_mut()
            .insert(table.name.clone(), types.clone());
        Ok(types)
    }
}

impl RowWriter for BinaryCopy {
    fn target(&self) -> &dyn Sql {
        &self.conn
    }

    fn write_rows(&self, table: &Table, rows: &[Row]) -> Result<(), StoreError> {
        let columns: Vec<String> = table.columns.iter().map(|c| quoted(c)).collect();
        let columns = columns.join(", ");
        let types = self.column_types(table, &columns)?;
        let mut client = self.conn.client();
        let sink = client
            .copy_in(&format!(
                "COPY {} ({columns}) FROM STDIN (FORMAT binary)",
                quoted(&table.name)
            ))
            .map_err(|e| self.conn.failure(&e))?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for row in rows {
            let values: Vec<Value> = (0..table.columns.len())
                .map(|i| row.get::<Value>(i))
                .collect::<Result<_, _>>()?;
            let bound: Vec<Bound<'_>> = values.iter().map(|v| Bound(param(v))).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as _).collect();
            writer.write(&refs).map_err(|e| self.conn.failure(&e))?;
        }
        writer.finish().map_err(|e| self.conn.failure(&e))?;
        Ok(())
    }
}
