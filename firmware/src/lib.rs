//! Card firmware (issue 4).
