//! `till360-hub traits backtest`: the candidate models scored on the data the hub holds.

use chrono::NaiveDate;

use crate::store::{self, sql::Sql};
use crate::traits::backtest::{backtest as score_models, Backtest};
use crate::traits::history::{date_of_day, day_number};
use crate::traits::TraitsError;

/// Reads every purchase up to the end of the hold-out (`split` + `horizon_days`) from one
/// snapshot and back-tests the candidate models at `split`.
pub fn backtest(
    db: &dyn Sql,
    split: NaiveDate,
    horizon_days: u32,
) -> Result<Backtest, TraitsError> {
    let holdout_end = date_of_day(day_number(split) + i64::from(horizon_days));
    let data = store::traits::histories(db, holdout_end)?;
    Ok(score_models(&data.histories, split, horizon_days))
}
