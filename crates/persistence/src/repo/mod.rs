//! One repository per aggregate.

pub mod audit;
