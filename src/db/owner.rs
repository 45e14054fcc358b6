//! [`Db`]: the database as the application holds it, in `AppState`. It is the pool, plus on
//! SQLite this process's queue for the single write lock, so every write transaction of the
//! process takes its turn in one place ([`Db::begin_write`]).
//!
//! SQLite lets one writer in at a time, and a connection that finds the lock taken waits in
//! its busy handler, which *sleeps* (1, 2, 5 … 100 ms) between tries: under load the lock sits
//! free while the waiters sleep, and the longer a transaction, the worse. Queueing first on a
//! FIFO async mutex hands the lock from one writer of this process to the next at once. The
//! gate is taken *before* a connection, and held until the commit. Writers in other processes
//! still meet the busy handler.

use std::{ops::Deref, sync::Arc};

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, ExecResult, QueryResult,
    QuerySelect, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The pool and, on SQLite, the write gate. Cheap to clone (clones share both).
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    /// `Some` on SQLite: this process's turn at the write lock.
    gate: Option<Arc<Mutex<()>>>,
}

impl Db {
    pub fn new(conn: DatabaseConnection) -> Self {
        let gate = (conn.get_database_backend() == DatabaseBackend::Sqlite).then(Default::default);
        Self { conn, gate }
    }

    /// The pool itself.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Closes the pool (at shutdown).
    pub async fn close(&self) -> Result<(), DbErr> {
        self.conn.clone().close().await
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// This process's turn at SQLite's write lock, for a write that is not a transaction of
    /// [`Db::begin_write`] (a single autocommit statement); `None` on PostgreSQL.
    pub async fn gate(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }

    /// Starts a transaction that will write. On SQLite it waits for this process's turn, then
    /// `BEGIN IMMEDIATE` takes the write lock up front (instead of starting as a reader and failing
    /// with `SQLITE_BUSY` when it later writes). On PostgreSQL it is a plain `BEGIN`.
    ///
    /// A task must not start a second write transaction while it holds one: on SQLite the
    /// second would wait for the first forever.
    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let gate = self.gate().await;
        let sqlite_mode = self.gate.is_some().then_some(SqliteTransactionMode::Immediate);
        let txn = self
            .conn
            .begin_with_options(TransactionOptions { sqlite_transaction_mode: sqlite_mode, ..Default::default() })
            .await?;
        Ok(WriteTxn { txn, _gate: gate })
    }

    /// Runs `inserts` as one unit: all of their rows are written, or none.
    pub async fn insert_together(&self, inserts: Vec<sea_orm::sea_query::InsertStatement>) -> Result<(), DbErr> {
        let txn = self.begin_write().await?;
        for insert in &inserts {
            txn.execute(insert).await?;
        }
        txn.commit().await
    }
}

impl Deref for Db {
    type Target = DatabaseConnection;
    fn deref(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// A write transaction that holds this process's turn at SQLite's write lock until it ends.
/// Dropped without [`WriteTxn::commit`], it rolls back.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    /// Ends the transaction without its writes (as dropping it does), saying so at once.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// Locks the rows a query reads until the transaction ends (`FOR UPDATE`), so a
/// read-check-write on them cannot interleave with another. On SQLite the builder leaves the
/// clause out: a write transaction there holds the database's one write lock already.
pub fn for_update<Q: QuerySelect>(query: Q) -> Q {
    query.lock_exclusive()
}

/// Share-locks the rows a query reads until the transaction ends (`FOR SHARE`): a writer that
/// locks them [`for_update`] waits for this transaction, readers do not. Left out on SQLite, as
/// [`for_update`] is.
pub fn for_share<Q: QuerySelect>(query: Q) -> Q {
    query.lock_shared()
}

/// Both hand every statement to the connection they wrap, so `&state.db` and `&txn` go
/// wherever SeaORM takes a connection.
macro_rules! delegate_connection {
    ($ty:ty, $field:ident) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for $ty {
            fn get_database_backend(&self) -> DatabaseBackend {
                self.$field.get_database_backend()
            }
            async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                self.$field.execute_raw(stmt).await
            }
            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                self.$field.execute_unprepared(sql).await
            }
            async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
                self.$field.query_one_raw(stmt).await
            }
            async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                self.$field.query_all_raw(stmt).await
            }
        }
    };
}

delegate_connection!(Db, conn);
delegate_connection!(WriteTxn, txn);
