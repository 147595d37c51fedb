//! One seed of a hosted system (see `crate::sut`): the generic world. Written next.
