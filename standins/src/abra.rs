//! Stand-in abra.
