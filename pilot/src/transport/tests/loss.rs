//! Transfers under loss, reordering and duplication.
