//! [`Num`]: how every number of a record is read, whatever the producer wrote.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A non-negative number that may arrive as an integer or a float; negatives clamp to 0.
/// Written back as an integer when it is whole (byte counts stay `48500000`, not `48500000.0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
        if self.0.fract() == 0.0 && self.0.abs() < EXACT_INTEGER_LIMIT {
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl Num {
    pub fn u64(self) -> u64 {
        if self.0.is_finite() && self.0 > 0.0 { self.0.round() as u64 } else { 0 }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl Visitor<'_> for NumVisitor {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v.max(0) as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(if v.is_finite() { v.max(0.0) } else { 0.0 }))
            }
        }
        d.deserialize_any(NumVisitor)
    }
}

impl Num {
    /// `Some(x)` as a record field: how a producer fills the fields readers take as optional.
    pub fn some(x: impl Into<Num>) -> Option<Num> {
        Some(x.into())
    }
}

impl From<u64> for Num {
    fn from(v: u64) -> Num {
        Num(v as f64)
    }
}

impl From<u32> for Num {
    fn from(v: u32) -> Num {
        Num(v as f64)
    }
}

impl From<usize> for Num {
    fn from(v: usize) -> Num {
        Num(v as f64)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Num {
        Num(v)
    }
}
