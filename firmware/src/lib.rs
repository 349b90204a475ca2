//! The card's control plane (issue 4, in progress): the message format and
//! the record table. The memory manager that sequences the controller's
//! operations, reboot-stage delivery and the mailbox come next.

pub mod records;
pub mod tlv;
