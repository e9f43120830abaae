//! Everything `flashgate` prints on stdout goes through a [`Printer`], like etcdctl's
//! `printer.go`. A command describes its results once — [`ToJson`] for `-o json`, [`TableRow`]
//! for the table's columns — and says which shape it prints (a list, what it did, details, a
//! stream); `table.rs` and `json.rs` each render every shape for their format. A new command
//! adds its records and no formatting code.

mod json;
mod table;

use std::fmt::Display;

use serde_json::Value;

pub use table::cell;

/// `-o`: how results are printed.
// (No doc comments on the variants: clap would print them in `--help`, long form.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    // Aligned columns and sentences, for people.
    Table,
    // JSON documents, for scripts.
    Json,
}

/// A result as a JSON value (the `-o json` form of every shape).
pub trait ToJson {
    /// The JSON object (or value) describing `self`.
    fn json(&self) -> Value;
}

impl ToJson for Value {
    fn json(&self) -> Value {
        self.clone()
    }
}

/// A result that is one row of a table.
pub trait TableRow: ToJson {
    /// Column headers.
    const COLUMNS: &'static [&'static str];
    /// The cells, in [`Self::COLUMNS`] order.
    fn cells(&self) -> Vec<String>;
}

fn array<R: ToJson>(records: &[R]) -> Value {
    Value::Array(records.iter().map(ToJson::json).collect())
}

/// Prints results in the format chosen with `-o`.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    format: Format,
}

impl Printer {
    /// A printer for `format`.
    pub fn new(format: Format) -> Self {
        Self { format }
    }

    /// Many records: a table under its header / a JSON array.
    pub fn list<R: TableRow>(&self, records: &[R]) {
        match self.format {
            Format::Table => table::list(R::COLUMNS, records.iter().map(R::cells)),
            Format::Json => json::document(&array(records)),
        }
    }

    /// What a command did: one sentence / the resulting object.
    pub fn done(&self, result: &impl ToJson, sentence: impl Display) {
        match self.format {
            Format::Table => table::sentence(sentence),
            Format::Json => json::document(&result.json()),
        }
    }

    /// A confirmation with nothing to give a script: one sentence / nothing.
    pub fn note(&self, sentence: impl Display) {
        match self.format {
            Format::Table => table::sentence(sentence),
            Format::Json => {}
        }
    }

    /// One thing in detail: `name: value` lines / the object.
    pub fn details(&self, result: &impl ToJson, fields: &[(&str, String)]) {
        match self.format {
            Format::Table => table::fields(fields),
            Format::Json => json::document(&result.json()),
        }
    }

    /// A headline over a list (totals, then their breakdown) / the object.
    pub fn summary<R: TableRow>(&self, result: &impl ToJson, headline: impl Display, rows: &[R]) {
        match self.format {
            Format::Table => {
                table::sentence(headline);
                table::list(R::COLUMNS, rows.iter().map(R::cells));
            }
            Format::Json => json::document(&result.json()),
        }
    }

    /// Records as they arrive: the first batch under a header, later ones as plain rows / one
    /// JSON line per record (for `jq` and log pipelines).
    pub fn stream<R: TableRow>(&self, records: &[R], first: bool) {
        match self.format {
            Format::Table if first => table::list(R::COLUMNS, records.iter().map(R::cells)),
            Format::Table => table::rows(records.iter().map(R::cells)),
            Format::Json => records.iter().for_each(|r| json::line(&r.json())),
        }
    }

    /// One refresh of a watched list (`refresh` counts from 0): the table under `banner`, the
    /// screen cleared first on a terminal / one JSON line per refresh.
    pub fn refresh<R: TableRow>(&self, records: &[R], banner: impl Display, refresh: u64) {
        match self.format {
            Format::Table => {
                table::new_screen(refresh);
                table::sentence(banner);
                table::list(R::COLUMNS, records.iter().map(R::cells));
            }
            Format::Json => json::line(&array(records)),
        }
    }
}
