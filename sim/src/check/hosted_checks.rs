//! The generic checkers of a hosted system, over `hosted::HostedRecord`s. Written next.
