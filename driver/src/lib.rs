//! Host driver (issue 3).
