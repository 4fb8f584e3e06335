//! walb-daemon: the storage, proxy and archive roles.
//!
//! Empty until the pipeline issue is taken up. The roles will be pure state machines driven
//! by tokio, using `walb-kernel` for every byte that touches a log, a diff or an image.
