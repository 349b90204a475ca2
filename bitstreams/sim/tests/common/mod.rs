//! What the board tests share.

use hitless_driver::Options;
use std::time::Duration;

/// Small rings (the board's window is 16 KiB) and generous timeouts (the
/// simulated line is slow).
pub fn options() -> Options {
    Options {
        dq_log2: 2,
        cq_log2: 3,
        op_timeout: Duration::from_secs(60),
        boot_timeout: Duration::from_secs(60),
    }
}
