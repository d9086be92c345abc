//! The CLI front end: one module per subcommand, each parsing its arguments, calling
//! the library's operations and printing the result.

pub mod bench;
pub mod conntrack;
pub mod down;
pub mod exec;
pub mod logs;
pub mod metrics;
pub mod ports;
pub mod publish;
pub mod rm;
pub mod run;
pub mod stats;
pub mod status;
pub mod up;
