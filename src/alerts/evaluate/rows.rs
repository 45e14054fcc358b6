//! Statements over many rows at once, shared by the evaluation's tables: inserts and upserts a
//! chunk at a time, and the one-statement condition for a set of (a, b) pairs.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, Value, sea_query::OnConflict,
};

/// Rows per statement.
pub(super) const CHUNK: usize = 500;

/// Inserts the row `row` makes of each of `keys`, [`CHUNK`] per statement; `on_conflict` says
/// what happens to a row that exists (nothing, or which columns it takes).
pub(super) async fn insert_chunked<C, K, A>(
    db: &C,
    keys: &[K],
    row: impl Fn(&K) -> A,
    on_conflict: OnConflict,
) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
{
    for chunk in keys.chunks(CHUNK) {
        <A::Entity as EntityTrait>::insert_many(chunk.iter().map(&row))
            .on_conflict(on_conflict.clone())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// `a IN (…) AND b IN (…)`: a superset of the pairs (the caller keeps the pairs it asked for),
/// and one short statement whatever the number of pairs.
pub(super) fn pair_condition<A, B>(keys: &[(A, B)], a: impl ColumnTrait, b: impl ColumnTrait) -> Condition
where
    A: Copy + Ord + Into<Value>,
    B: Copy + Ord + Into<Value>,
{
    let mut xs: Vec<A> = keys.iter().map(|k| k.0).collect();
    let mut ys: Vec<B> = keys.iter().map(|k| k.1).collect();
    xs.sort_unstable();
    xs.dedup();
    ys.sort_unstable();
    ys.dedup();
    Condition::all().add(a.is_in(xs)).add(b.is_in(ys))
}
