//! Outputs: where spans and metrics leave the agent.

pub mod printer;
pub mod prometheus;
