//! Names shown to people (products, factories): short and printable, so they cannot garble a
//! table or a log line.

use crate::error::{CoordinatorError as E, Result};

pub(super) fn valid_name(name: &str, what: &str) -> Result<()> {
    if name.len() > 128 || name.chars().any(char::is_control) {
        return Err(E::InvalidArgument(format!(
            "{what} must be at most 128 printable characters"
        )));
    }
    Ok(())
}
